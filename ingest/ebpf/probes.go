package ebpf

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Defaults for [Config].
const (
	DefaultRingBytes    = 8 << 20
	DefaultWakeupBytes  = 64 << 10
	DefaultQueueLen     = 1 << 16
	DefaultPollInterval = 50 * time.Millisecond
)

// TracefsPath is where [Load] mounts tracefs when no tracefs is mounted: tracepoints are found
// by name through it.
const TracefsPath = "/sys/kernel/tracing"

// ErrUnsupported wraps load and attach failures caused by the kernel or missing privileges rather
// than by mcpwatch: callers that treat kernel monitoring as optional log it and go on.
var ErrUnsupported = errors.New("ebpf monitoring unavailable")

// Config configures [Load]. The zero value is usable.
type Config struct {
	// RingBytes is the ring buffer's size: a power of two, at least one page. Default
	// [DefaultRingBytes]: at ~500 bytes a record, some 16,000 events of slack.
	RingBytes int
	// WakeupBytes: the kernel wakes the reader only once this many bytes wait in the ring;
	// otherwise the reader finds them at its next poll (PollInterval). Batching wakeups is what
	// lets the ring carry hundreds of thousands of events a second. 0 wakes on every event.
	// Default [DefaultWakeupBytes]; negative means 0.
	WakeupBytes int
	// QueueLen bounds the decoded events waiting for [Probes.Events]' consumer. When it is
	// full, events are dropped and counted (the ring buffer is never left unread: a stalled
	// consumer must not make the kernel drop instead, uncounted by kind). Default
	// [DefaultQueueLen].
	QueueLen int
	// PollInterval is the longest an event waits in a quiet ring before it is read. Default
	// [DefaultPollInterval].
	PollInterval time.Duration
	// Registerer receives the metrics (see docs/ebpf.md); nil registers none.
	Registerer prometheus.Registerer
	// Log may be nil.
	Log *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.RingBytes == 0 {
		c.RingBytes = DefaultRingBytes
	}
	page := os.Getpagesize()
	if c.RingBytes < page || c.RingBytes&(c.RingBytes-1) != 0 {
		return fmt.Errorf("ebpf: ring buffer size %d must be a power of two and at least %d (one page)", c.RingBytes, page)
	}
	if c.WakeupBytes == 0 {
		c.WakeupBytes = DefaultWakeupBytes
	}
	if c.WakeupBytes < 0 {
		c.WakeupBytes = 0
	}
	if c.QueueLen <= 0 {
		c.QueueLen = DefaultQueueLen
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return nil
}

// program is one tracepoint attachment.
type program struct {
	group, name string
	prog        func(*mcpwatchPrograms) *ebpf.Program
	// optional programs fail soft: a kernel without the tracepoint loses that view only.
	optional bool
}

var programs = []program{
	{"sched", "sched_process_exec", func(p *mcpwatchPrograms) *ebpf.Program { return p.HandleExec }, false},
	{"sched", "sched_process_exit", func(p *mcpwatchPrograms) *ebpf.Program { return p.HandleExit }, false},
	{"syscalls", "sys_enter_openat", func(p *mcpwatchPrograms) *ebpf.Program { return p.HandleOpenat }, false},
	{"syscalls", "sys_enter_connect", func(p *mcpwatchPrograms) *ebpf.Program { return p.HandleConnect }, false},
	// open(2) does not exist on arm64 and riscv64; openat2(2) since Linux 5.6.
	{"syscalls", "sys_enter_open", func(p *mcpwatchPrograms) *ebpf.Program { return p.HandleOpen }, true},
	{"syscalls", "sys_enter_openat2", func(p *mcpwatchPrograms) *ebpf.Program { return p.HandleOpenat2 }, true},
}

// Probes are mcpwatch's eBPF programs, loaded and attached, with the reader that drains their
// ring buffer into a bounded queue ([Probes.Events]). Only processes in watched cgroups
// ([Probes.Watch]) and their descendant cgroups produce events. Close detaches everything.
type Probes struct {
	cfg        Config
	log        *slog.Logger
	objs       mcpwatchObjects
	links      []link.Link
	attached   []string
	rd         *ringbuf.Reader
	queue      chan Event
	bootOffset int64
	m          *metrics

	stopping  atomic.Bool
	readDone  chan struct{}
	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	watched map[uint64]struct{}
}

// Load loads the programs into the kernel, attaches them to their tracepoints and starts reading
// the ring buffer. It mounts tracefs at [TracefsPath] when none is mounted. Errors that come from
// the kernel or from missing privileges wrap [ErrUnsupported] and say which capability or kernel
// feature is missing.
func Load(cfg Config) (_ *Probes, err error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	p := &Probes{
		cfg: cfg, log: cfg.Log.With("component", "ebpf"), queue: make(chan Event, cfg.QueueLen),
		readDone: make(chan struct{}), watched: map[uint64]struct{}{},
	}
	if p.bootOffset, err = bootOffset(); err != nil {
		return nil, err
	}
	spec, err := loadMcpwatch()
	if err != nil {
		return nil, fmt.Errorf("ebpf: parse embedded object: %w", err)
	}
	spec.Maps[mcpwatchMapEvents].MaxEntries = uint32(cfg.RingBytes)
	if err := spec.Variables[mcpwatchVarWakeupBytes].Set(uint64(cfg.WakeupBytes)); err != nil {
		return nil, fmt.Errorf("ebpf: set wakeup_bytes: %w", err)
	}
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			p.log.Error("eBPF verifier rejected a program", "log", fmt.Sprintf("%+v", ve))
		}
		return nil, fmt.Errorf("%w: load programs (needs CAP_BPF and CAP_PERFMON, a kernel with BTF and ring buffers, 5.8+): %w", ErrUnsupported, err)
	}
	defer func() {
		if err != nil {
			p.detach()
			p.objs.Close()
		}
	}()
	if err := ensureTracefs(); err != nil {
		return nil, err
	}
	for _, pr := range programs {
		l, err := link.Tracepoint(pr.group, pr.name, pr.prog(&p.objs.mcpwatchPrograms), nil)
		if err != nil {
			if pr.optional {
				p.log.Warn("optional eBPF program not attached: its view is missing on this kernel",
					"tracepoint", pr.group+"/"+pr.name, "err", err)
				continue
			}
			return nil, fmt.Errorf("%w: attach tracepoint %s/%s: %w", ErrUnsupported, pr.group, pr.name, err)
		}
		p.links = append(p.links, l)
		p.attached = append(p.attached, pr.group+"/"+pr.name)
	}
	if p.rd, err = ringbuf.NewReader(p.objs.Events); err != nil {
		return nil, fmt.Errorf("%w: open ring buffer: %w", ErrUnsupported, err)
	}
	p.m = newMetrics(p)
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(p.m); err != nil {
			p.rd.Close()
			return nil, fmt.Errorf("ebpf: register metrics: %w", err)
		}
	}
	go p.read()
	p.log.Info("eBPF probes attached", "tracepoints", p.attached, "ring_bytes", cfg.RingBytes,
		"wakeup_bytes", cfg.WakeupBytes, "queue", cfg.QueueLen)
	return p, nil
}

// ensureTracefs mounts tracefs at [TracefsPath] unless a tracefs (or debugfs) is mounted.
func ensureTracefs() error {
	var st unix.Statfs_t
	for _, path := range []string{TracefsPath, "/sys/kernel/debug/tracing"} {
		if unix.Statfs(path, &st) == nil && (st.Type == unix.TRACEFS_MAGIC || st.Type == unix.DEBUGFS_MAGIC) {
			return nil
		}
	}
	if err := unix.Mount("tracefs", TracefsPath, "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("%w: no tracefs mounted and mounting it at %s failed (mount it beforehand, or grant CAP_SYS_ADMIN): %w",
			ErrUnsupported, TracefsPath, err)
	}
	return nil
}

// bootOffset returns wall-clock time minus CLOCK_BOOTTIME, in nanoseconds.
func bootOffset() (int64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, fmt.Errorf("ebpf: read boot clock: %w", err)
	}
	return time.Now().UnixNano() - ts.Nano(), nil
}

// Attached returns the tracepoints the programs are attached to, as "group/name".
func (p *Probes) Attached() []string { return append([]string(nil), p.attached...) }

// Events returns the queue of decoded events. It is closed after [Probes.Close] has drained the
// ring buffer.
func (p *Probes) Events() <-chan Event { return p.queue }

// Watch makes processes in the cgroup with this id, and in every cgroup below it, produce
// events. Add a sandbox's cgroup before its first process starts, so its exec is seen.
func (p *Probes) Watch(cgroupID uint64) error {
	if cgroupID == 0 {
		return errors.New("ebpf: watch cgroup id 0")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.objs.Watched.Update(cgroupID, uint32(1), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("ebpf: watch cgroup %d: %w", cgroupID, err)
	}
	p.watched[cgroupID] = struct{}{}
	return nil
}

// Unwatch stops watching the cgroup. Unwatching a cgroup not watched is not an error.
func (p *Probes) Unwatch(cgroupID uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.watched, cgroupID)
	if err := p.objs.Watched.Delete(cgroupID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("ebpf: unwatch cgroup %d: %w", cgroupID, err)
	}
	return nil
}

// Watching returns the number of watched cgroups.
func (p *Probes) Watching() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.watched)
}

// Stats are the probes' counters; every event the kernel produced is in exactly one of Read,
// QueueDropped and DecodeErrors once the ring is drained, and every event it could not produce
// is in ReserveFailed.
type Stats struct {
	Submitted     uint64 // events the kernel put in the ring
	ReserveFailed uint64 // events lost because the ring was full (summed over CPUs)
	Read          uint64 // events read and queued
	QueueDropped  uint64 // events read but dropped because the queue was full
	DecodeErrors  uint64 // records that did not decode (a bug: the layout test should catch it)
	// ReserveFailedPerCPU is ReserveFailed by CPU.
	ReserveFailedPerCPU []uint64
}

// Stats reads the counters, the kernel's included.
func (p *Probes) Stats() (Stats, error) {
	sub, err := p.perCPU(statSubmitted)
	if err != nil {
		return Stats{}, err
	}
	fail, err := p.perCPU(statReserveFailed)
	if err != nil {
		return Stats{}, err
	}
	s := Stats{ReserveFailedPerCPU: fail, Read: p.m.read.Load(), QueueDropped: p.m.dropped.Load(), DecodeErrors: p.m.decodeErr.Load()}
	for i := range sub {
		s.Submitted += sub[i]
	}
	for i := range fail {
		s.ReserveFailed += fail[i]
	}
	return s, nil
}

func (p *Probes) perCPU(idx uint32) ([]uint64, error) {
	var vals []uint64
	if err := p.objs.Stats.Lookup(idx, &vals); err != nil {
		return nil, fmt.Errorf("ebpf: read stats[%d]: %w", idx, err)
	}
	return vals, nil
}

// read drains the ring buffer into the queue until Close flushes it.
func (p *Probes) read() {
	defer close(p.readDone)
	defer close(p.queue)
	var rec ringbuf.Record
	for {
		if !p.stopping.Load() {
			p.rd.SetDeadline(time.Now().Add(p.cfg.PollInterval))
		}
		err := p.rd.ReadInto(&rec)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue
		case errors.Is(err, ringbuf.ErrFlushed), errors.Is(err, ringbuf.ErrClosed), errors.Is(err, os.ErrClosed):
			if p.stopping.Load() {
				return
			}
			continue
		default:
			p.log.Error("ring buffer read failed; stopping the reader", "err", err)
			return
		}
		ev, err := decode(rec.RawSample, p.bootOffset)
		if err != nil {
			p.m.decodeErr.Add(1)
			p.log.Error("undecodable kernel record (dropped and counted)", "err", err, "bytes", len(rec.RawSample))
			continue
		}
		select {
		case p.queue <- ev:
			p.m.read.Add(1)
			p.m.readByKind[kindIndex(ev.Kind)].Add(1)
		default:
			p.m.dropped.Add(1)
		}
	}
}

// Close detaches every program, delivers what is left in the ring buffer to the queue (dropping
// what does not fit), closes the queue and frees the maps. Safe to call more than once.
func (p *Probes) Close() error {
	p.closeOnce.Do(func() {
		errs := []error{p.detach()}
		p.stopping.Store(true)
		errs = append(errs, p.rd.Flush())
		<-p.readDone
		errs = append(errs, p.rd.Close())
		if p.cfg.Registerer != nil {
			p.cfg.Registerer.Unregister(p.m)
		}
		errs = append(errs, p.objs.Close())
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

func (p *Probes) detach() error {
	var errs []error
	for _, l := range p.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach: %w", err))
		}
	}
	p.links = nil
	return errors.Join(errs...)
}

func kindIndex(k Kind) int {
	if k >= KindExec && k <= kindMax {
		return int(k)
	}
	return 0
}

func cpuLabel(i int) string { return strconv.Itoa(i) }
