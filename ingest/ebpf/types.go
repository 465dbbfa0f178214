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
