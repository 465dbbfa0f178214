package ebpf

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unsafe"
)

// Kind is what a kernel [Event] reports.
type Kind uint8

// Kinds of kernel events.
const (
	KindExec    Kind = typeExec    // a process ran a new program (sched_process_exec)
	KindExit    Kind = typeExit    // a process ended (sched_process_exit, thread group leader)
	KindOpen    Kind = typeOpen    // a file open was attempted (open, openat, openat2)
	KindConnect Kind = typeConnect // an IPv4 or IPv6 connect was attempted
	// KindEgressDenied: the egress programs ([Egress]) refused a connect or UDP send.
	KindEgressDenied Kind = typeEgress

	kindMax = KindEgressDenied
)

// String returns the kind's name as used in metrics labels.
func (k Kind) String() string {
	switch k {
	case KindExec:
		return "exec"
	case KindExit:
		return "exit"
	case KindOpen:
		return "open"
	case KindConnect:
		return "connect"
	case KindEgressDenied:
		return "egress_denied"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Event is one decoded kernel record. Fields not meaningful for its [Kind] are zero.
type Event struct {
	Kind Kind
	Time time.Time
	// PID is the process (thread group) id, TID the thread's; PPID the parent process.
	PID, TID, PPID uint32
	UID, GID       uint32
	// CgroupID is the process's own cgroup; WatchedCgroupID the watched cgroup it was matched by:
	// the same, or its nearest watched ancestor (a sandbox whose server made child cgroups).
	CgroupID, WatchedCgroupID uint64
	Comm                      string

	// Exec: the program's path as passed to execve, and its argv (best effort: at most 1 KiB of
	// the argument area is read; ArgsTruncated says more was there).
	Filename      string
	Args          []string
	ArgsTruncated bool

	// Exit: the process's exit code, or the signal that ended it.
	ExitCode, ExitSignal int

	// Open: the path as passed (relative paths are relative to Dfd, -100 being the working
	// directory), the open flags and the syscall ("open", "openat", "openat2").
	Path    string
	Flags   uint64
	Dfd     int32
	Syscall string

	// Connect and EgressDenied: the destination.
	Addr netip.AddrPort

	// EgressDenied: why ([EgressRuleBlocked] or [EgressRuleNotAllowed]), the allow-list's id in
	// the kernel (0: none) and the socket's IP protocol (6 TCP, 17 UDP). Syscall is "connect" or
	// "sendmsg" (a UDP send to an address).
	EgressRule   string
	EgressPolicy uint32
	Protocol     uint8
}

// Values of [Event.EgressRule].
const (
	EgressRuleBlocked    = "blocked"     // the sandbox's egress is blocked by a control
	EgressRuleNotAllowed = "not_allowed" // no rule of the sandbox's allow-list matches
)

// Errors of [decode].
var (
	errShortRecord = errors.New("kernel record shorter than its type's struct")
	errUnknownType = errors.New("kernel record of unknown type")
)

// decode turns one ring-buffer record into an [Event]. bootOffset converts the kernel's boot-time
// clock into wall time (wall = boot + offset).
func decode(b []byte, bootOffset int64) (Event, error) {
	var hdr rawHeader
	if len(b) < int(unsafe.Sizeof(hdr)) {
		return Event{}, fmt.Errorf("%w: %d bytes", errShortRecord, len(b))
	}
	copyInto(&hdr, b)
	e := Event{
		Kind: Kind(hdr.Type), Time: time.Unix(0, int64(hdr.TsNs)+bootOffset),
		PID: hdr.PID, TID: hdr.TID, PPID: hdr.PPID, UID: hdr.UID, GID: hdr.GID,
		CgroupID: hdr.CgroupID, WatchedCgroupID: hdr.WatchedCgroupID, Comm: cstring(hdr.Comm[:]),
	}
	switch hdr.Type {
	case typeExec:
		var r rawExec
		if err := copyChecked(&r, b); err != nil {
			return Event{}, err
		}
		e.Filename = cstring(r.Filename[:])
		n := min(int(r.ArgsLen), len(r.Args))
		e.Args = splitArgs(r.Args[:n])
		e.ArgsTruncated = r.ArgsTruncated != 0
		e.Syscall = "execve"
	case typeExit:
		var r rawExit
		if err := copyChecked(&r, b); err != nil {
			return Event{}, err
		}
		e.ExitCode = int(r.ExitCode>>8) & 0xff
		e.ExitSignal = int(r.ExitCode) & 0x7f
		e.Syscall = "exit"
	case typeOpen:
		var r rawOpen
		if err := copyChecked(&r, b); err != nil {
			return Event{}, err
		}
		e.Path = cstring(r.Path[:])
		e.Flags = r.Flags
		e.Dfd = r.Dfd
		switch r.Syscall {
		case 0:
			e.Syscall = "open"
		case 2:
			e.Syscall = "openat2"
		default:
			e.Syscall = "openat"
		}
	case typeConnect:
		var r rawConnect
		if err := copyChecked(&r, b); err != nil {
			return Event{}, err
		}
		var addr netip.Addr
		switch r.Family {
		case afInet:
			addr = netip.AddrFrom4([4]byte(r.Addr[:4]))
		case afInet6:
			addr = netip.AddrFrom16(r.Addr)
		default:
			return Event{}, fmt.Errorf("connect record with address family %d", r.Family)
		}
		e.Addr = netip.AddrPortFrom(addr, r.Port)
		e.Syscall = "connect"
	case typeEgress:
		var r rawEgress
		if err := copyChecked(&r, b); err != nil {
			return Event{}, err
		}
		var addr netip.Addr
		switch r.Family {
		case afInet:
			addr = netip.AddrFrom4([4]byte(r.Addr[:4]))
		case afInet6:
			addr = netip.AddrFrom16(r.Addr)
		default:
			return Event{}, fmt.Errorf("egress record with address family %d", r.Family)
		}
		e.Addr = netip.AddrPortFrom(addr, r.Port)
		switch r.Rule {
		case egressRuleBlocked:
			e.EgressRule = EgressRuleBlocked
		case egressRuleNotAllowed:
			e.EgressRule = EgressRuleNotAllowed
		default:
			return Event{}, fmt.Errorf("egress record with rule %d", r.Rule)
		}
		e.Syscall = "connect"
		if r.Hook == hookSendmsg4 || r.Hook == hookSendmsg6 {
			e.Syscall = "sendmsg"
		}
		e.EgressPolicy, e.Protocol = r.Policy, r.Protocol
	default:
		return Event{}, fmt.Errorf("%w %d", errUnknownType, hdr.Type)
	}
	return e, nil
}

const (
	afInet  = 2
	afInet6 = 10
)

// copyInto copies the first sizeof(*dst) bytes of b into dst; b must be long enough.
func copyInto[T any](dst *T, b []byte) {
	copy(unsafe.Slice((*byte)(unsafe.Pointer(dst)), unsafe.Sizeof(*dst)), b)
}

func copyChecked[T any](dst *T, b []byte) error {
	if len(b) < int(unsafe.Sizeof(*dst)) {
		return fmt.Errorf("%w: %d bytes, want %d", errShortRecord, len(b), unsafe.Sizeof(*dst))
	}
	copyInto(dst, b)
	return nil
}

// cstring returns b up to its first NUL.
func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// splitArgs splits a NUL-separated argv area; a trailing piece cut short is kept.
func splitArgs(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	parts := bytes.Split(b, []byte{0})
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = string(p)
	}
	return out
}
