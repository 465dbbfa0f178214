package ebpf

// Go copies of the C event structs in bpf/mcpwatch.bpf.c. Field order, sizes and padding must
// match the C layout exactly: records are copied into these with one memcpy.
// TestLayoutMatchesBTF checks every field's offset and size against the object's BTF.

const (
	pathMaxLen  = 256
	argsMaxLen  = 1024
	commLen     = 16
	typeExec    = 1
	typeExit    = 2
	typeOpen    = 3
	typeConnect = 4
	typeEgress  = 5 // egress.bpf.c's EVENT_EGRESS_DENIED
)

// Indexes of the per-CPU stats array (enum stat_index).
const (
	statSubmitted     = 0
	statReserveFailed = 1
	statCount         = 2
)

type rawHeader struct {
	Type            uint32
	PID             uint32
	TID             uint32
	PPID            uint32
	UID             uint32
	GID             uint32
	TsNs            uint64
	CgroupID        uint64
	WatchedCgroupID uint64
	Comm            [commLen]byte
}

type rawExec struct {
	Hdr           rawHeader
	ArgsLen       uint32
	ArgsTruncated uint32
	Filename      [pathMaxLen]byte
	Args          [argsMaxLen]byte
}

type rawExit struct {
	Hdr      rawHeader
	ExitCode int32
	Pad      uint32
}

type rawOpen struct {
	Hdr     rawHeader
	Dfd     int32
	Syscall uint32
	Flags   uint64
	Path    [pathMaxLen]byte
}

type rawConnect struct {
	Hdr    rawHeader
	Family uint16
	Port   uint16
	Fd     int32
	Addr   [16]byte
}

// rawEgress is egress.bpf.c's struct egress_event: a connect or UDP send the egress programs
// refused.
type rawEgress struct {
	Hdr      rawHeader
	Family   uint16
	Port     uint16
	Policy   uint32
	Rule     uint8
	Hook     uint8
	Protocol uint8
	Pad      uint8
	Addr     [16]byte
	Pad2     uint32
}

// Values of rawEgress.Rule (enum egress_rule) and rawEgress.Hook (enum egress_hook).
const (
	egressRuleBlocked    = 1
	egressRuleNotAllowed = 2

	hookConnect4 = 1
	hookConnect6 = 2
	hookSendmsg4 = 3
	hookSendmsg6 = 4
)

// Indexes of the egress_stats per-CPU array (enum egress_stat_index).
const (
	egressStatDeniedBlocked    = 0
	egressStatDeniedNotAllowed = 1
)
