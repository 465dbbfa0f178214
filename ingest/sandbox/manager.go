// Package sandbox runs stdio MCP servers in sandboxes — one cgroup v2 each, with resource limits
// where the hierarchy offers the controllers — and serves them over MCP Streamable HTTP
// ([Bridge]), one server process per MCP session.
//
// A [Manager] owns one parent cgroup (default <cgroup2 mount>/mcpwatch). Every [Sandbox] is a child
// cgroup named by its id, and its process is cloned straight into it (clone3 CLONE_INTO_CGROUP),
// so the server never runs a single instruction outside its sandbox. The process runs with
// no_new_privs, in its own process group, with only the environment it was given, and optionally
// as another user and without network ([Spec.User], [Spec.Network]). A sandbox can be
// frozen (quarantine) and thawed; it ends with its process, and stopping it kills everything left
// in the cgroup (cgroup.kill) and removes the cgroup.
package sandbox

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
)

// Defaults for [Options].
const (
	DefaultParent    = "mcpwatch"
	DefaultStopGrace = 5 * time.Second
)

// Controllers the sandboxes' limits need: memory for [Limits.MemoryMax], pids for
// [Limits.PidsMax], cpu for [Limits.CPUMax].
const (
	ControllerCPU    = "cpu"
	ControllerMemory = "memory"
	ControllerPids   = "pids"
)

const cgroup2Magic = 0x63677270 // CGROUP2_SUPER_MAGIC

// ErrLimitsUnavailable is returned by [Manager.Start] for limits whose controller the cgroup v2
// hierarchy does not offer, when [Options.RequireLimits] is set.
var ErrLimitsUnavailable = errors.New("sandbox limits unavailable")

// Options configure a [Manager].
type Options struct {
	// Root is the cgroup v2 mount point; empty finds it with [FindCgroup2].
	Root string
	// Parent is the cgroup the sandboxes are created under, relative to Root (an absolute path
	// inside Root is accepted too). Default [DefaultParent]. One manager owns it: a second one on
	// the same parent is refused, and every child found there at start is a sandbox left by a
	// previous run, which is killed and removed.
	Parent string
	// StopGrace is how long [Sandbox.Stop] waits after closing the server's input, and again
	// after SIGTERM, before killing the cgroup. Default [DefaultStopGrace].
	StopGrace time.Duration
	// RequireLimits refuses to start a sandbox whose limits cannot be applied (the controller is
	// not available in the cgroup v2 hierarchy) instead of starting it without them and warning.
	RequireLimits bool
	// Log receives the manager's warnings and each sandbox's stderr (debug level). Nil: the
	// default logger.
	Log *slog.Logger
	// Watcher, when set, is told of every sandbox cgroup before the sandbox's process starts and
	// after the cgroup is removed: the eBPF agent (ingest/ebpf), so that even a server's first
	// exec is seen. A sandbox whose cgroup cannot be watched is not started (fail closed).
	Watcher Watcher
}

// Watcher watches sandbox cgroups in the kernel (see [Options.Watcher]).
type Watcher interface {
	WatchSandbox(cgroupID uint64, sandbox, server string) error
	UnwatchSandbox(cgroupID uint64)
}

// Limits are a sandbox's resource limits; zero values mean no limit.
type Limits struct {
	MemoryMax int64   // bytes: memory.max (memory.swap.max is set to 0, memory.oom.group to 1)
	PidsMax   int64   // tasks: pids.max
	CPUMax    float64 // CPUs, e.g. 0.5: cpu.max
}

// IsZero reports whether no limit is set.
func (l Limits) IsZero() bool { return l == Limits{} }

// User is a numeric user and group to run a server as.
type User struct {
	UID, GID uint32
}

// Network is what network a sandboxed server sees.
type Network string

// Networks for [Spec.Network].
const (
	NetworkHost Network = ""     // the gateway's network
	NetworkNone Network = "none" // an empty network namespace: no interface but a down loopback
)

// Spec is what to run in a sandbox.
type Spec struct {
	// Server names the MCP server; it prefixes the sandbox id.
	Server string
	// Path and Args are the command; Path is looked up in the gateway's PATH when it has no slash.
	Path string
	Args []string
	// Env is the server's whole environment ("KEY=value"): nothing of the gateway's leaks into it.
	Env []string
	// Dir is the working directory; empty: the gateway's.
	Dir    string
	Limits Limits
	// User, when set, is who the server runs as, with no supplementary groups. Without it the
	// server runs as the gateway's user: root, for a gateway that manages cgroups itself.
	// Setting it needs CAP_SETUID and CAP_SETGID.
	User *User
	// Network is the server's network: [NetworkHost] (default) or [NetworkNone], its own
	// network namespace with nothing but a down loopback, for servers that must not reach
	// anything. NetworkNone needs CAP_SYS_ADMIN.
	Network Network
	// Stderr receives the server's stderr; nil logs it line by line at debug level.
	Stderr io.Writer
}

// Manager creates and tracks sandboxes under one parent cgroup. It is safe for concurrent use.
type Manager struct {
	opts   Options
	log    *slog.Logger
	root   string
	parent cgroup
	lock   *os.File        // the parent directory, flock'ed while the manager lives
	ctrl   map[string]bool // controllers enabled for the sandboxes
	spawn  chan spawnReq
	warned sync.Map // limit controller → warned once

	mu     sync.Mutex
	live   map[string]*Sandbox
	closed bool
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

// NewManager takes the parent cgroup: creates it, refuses it if another manager holds it, kills
// and removes the sandboxes a previous run left there, and enables the controllers the limits
// need where the hierarchy offers them (warning about the others).
func NewManager(opts Options) (*Manager, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = DefaultStopGrace
	}
	if opts.Parent == "" {
		opts.Parent = DefaultParent
	}
	root := opts.Root
	if root == "" {
		r, err := FindCgroup2()
		if err != nil {
			return nil, err
		}
		root = r
	}
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(root, &sfs); err != nil {
		return nil, fmt.Errorf("cgroup v2 root %s: %w", root, err)
	}
	if uint32(sfs.Type) != cgroup2Magic {
		return nil, fmt.Errorf("%s is not a cgroup v2 mount: %w", root, ErrNoCgroup2)
	}
	parent := opts.Parent
	if rel, err := filepath.Rel(root, parent); err == nil && filepath.IsAbs(parent) && !strings.HasPrefix(rel, "..") {
		parent = rel
	}
	parent = filepath.Join(root, filepath.Clean("/"+parent))
	if parent == filepath.Clean(root) {
		return nil, errors.New("sandbox parent cgroup must not be the cgroup v2 root")
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("create parent cgroup %s: %w", parent, err)
	}
	lock, err := os.Open(parent)
	if err != nil {
		return nil, fmt.Errorf("open parent cgroup %s: %w", parent, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("parent cgroup %s is in use by another mcpwatch process (give each gateway its own sandbox parent): %w", parent, err)
	}
	m := &Manager{
		opts: opts, log: opts.Log.With("component", "sandbox"), root: root, parent: cgroup(parent), lock: lock,
		ctrl: map[string]bool{}, live: map[string]*Sandbox{}, spawn: make(chan spawnReq),
	}
	if err := m.removeStale(); err != nil {
		lock.Close()
		return nil, err
	}
	m.enableControllers()
	ready := make(chan error, 1)
	go m.spawner(ready)
	if err := <-ready; err != nil {
		close(m.spawn)
		lock.Close()
		return nil, err
	}
	return m, nil
}

// removeStale kills and removes what a previous run left under the parent: after a crash its
// servers may still run, outside any supervision.
func (m *Manager) removeStale() error {
	entries, err := os.ReadDir(string(m.parent))
	if err != nil {
		return fmt.Errorf("list parent cgroup %s: %w", m.parent, err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		c := cgroup(m.parent.path(e.Name()))
		pids, _ := c.pids()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.destroy(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("remove stale sandbox: %w", err)
		}
		m.log.Warn("removed a sandbox left by a previous run", "sandbox", e.Name(), "killed_processes", len(pids))
	}
	return nil
}

// enableControllers enables, for the sandboxes, the controllers the parent may distribute.
func (m *Manager) enableControllers() {
	avail, _ := m.parent.read("cgroup.controllers")
	have := strings.Fields(avail)
	for _, c := range []string{ControllerCPU, ControllerMemory, ControllerPids} {
		if !slices.Contains(have, c) {
			continue
		}
		if err := m.parent.write("cgroup.subtree_control", "+"+c); err != nil {
			m.log.Warn("cannot enable a cgroup controller for sandboxes", "controller", c, "err", err)
			continue
		}
		m.ctrl[c] = true
	}
	if len(m.ctrl) < 3 {
		m.log.Warn("cgroup v2 controllers missing: sandbox limits that need them are not applied "+
			"(on a hybrid cgroup layout they are bound to cgroup v1); membership, freeze and kill still work",
			"cgroup", string(m.parent), "available", m.Controllers())
	}
}

// spawner starts every sandboxed process from one OS thread that has no_new_privs set: the flag
// is per thread and inherited across clone and execve, so the servers can never gain privileges
// (setuid binaries, file capabilities), while the gateway's other threads are unaffected. The
// thread also stays alive as long as the manager, which keeps the servers' parent-death signal
// (sent when the thread that forked them ends) for when the gateway itself dies.
func (m *Manager) spawner(ready chan<- error) {
	runtime.LockOSThread()
	// Never unlocked: when this goroutine returns the runtime ends the thread, flag and all.
	const prSetNoNewPrivs = 38
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0); errno != 0 {
		ready <- fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", errno)
		return
	}
	ready <- nil
	for req := range m.spawn {
		req.done <- req.cmd.Start()
	}
}

// Controllers returns the cgroup controllers enabled for the sandboxes, sorted.
func (m *Manager) Controllers() []string {
	out := make([]string, 0, len(m.ctrl))
	for c := range m.ctrl {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// Parent returns the path of the parent cgroup.
func (m *Manager) Parent() string { return string(m.parent) }

// Sandboxes returns the running sandboxes.
func (m *Manager) Sandboxes() []*Sandbox {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Sandbox, 0, len(m.live))
	for _, s := range m.live {
		out = append(out, s)
	}
	return out
}

// Close stops every sandbox (see [Sandbox.Stop]), then releases and removes the parent cgroup.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	live := make([]*Sandbox, 0, len(m.live))
	for _, s := range m.live {
		live = append(live, s)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(live))
	for i, s := range live {
		wg.Go(func() { errs[i] = s.Stop(ctx) })
	}
	wg.Wait()
	close(m.spawn)
	_ = syscall.Rmdir(string(m.parent)) // busy if something else was put there: leave it
	errs = append(errs, m.lock.Close())
	return errors.Join(errs...)
}

// NewID returns a sandbox id for server: the server name made safe for a cgroup directory and
// the random tail of a UUIDv7, e.g. "files-3f9a0c21d4e7". Printable, unique, stable for the
// sandbox's life.
func NewID(server string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(server) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
		if b.Len() >= 40 {
			break
		}
	}
	name := strings.Trim(b.String(), "-.")
	if name == "" {
		name = "mcp"
	}
	u := uuid.Must(uuid.NewV7())
	return name + "-" + hex.EncodeToString(u[10:16])
}

// Start creates a sandbox and starts spec's command in it. The process is cloned directly into
// the sandbox's cgroup. Its stdin and stdout are [Sandbox.Stdin] and [Sandbox.Stdout].
func (m *Manager) Start(spec Spec) (*Sandbox, error) {
	if spec.Path == "" {
		return nil, errors.New("sandbox: no command")
	}
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return nil, errors.New("sandbox manager closed")
	}
	if err := m.checkLimits(spec.Limits); err != nil {
		return nil, err
	}
	var id string
	var cg cgroup
	for range 3 {
		id = NewID(spec.Server)
		cg = cgroup(m.parent.path(id))
		err := os.Mkdir(string(cg), 0o755)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("create sandbox cgroup: %w", err)
		}
		cg = ""
	}
	if cg == "" {
		return nil, errors.New("create sandbox cgroup: id collisions")
	}
	s, err := m.start(id, cg, spec)
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = cg.destroy(ctx)
		cancel()
		return nil, err
	}
	return s, nil
}

// checkLimits warns about (or, with RequireLimits, refuses) limits the hierarchy cannot apply.
func (m *Manager) checkLimits(l Limits) error {
	var missing []string
	for _, need := range []struct {
		set  bool
		ctrl string
	}{{l.MemoryMax > 0, ControllerMemory}, {l.PidsMax > 0, ControllerPids}, {l.CPUMax > 0, ControllerCPU}} {
		if need.set && !m.ctrl[need.ctrl] {
			missing = append(missing, need.ctrl)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if m.opts.RequireLimits {
		return fmt.Errorf("%w: controllers %v not enabled in the cgroup v2 hierarchy at %s", ErrLimitsUnavailable, missing, m.parent)
	}
	for _, c := range missing {
		if _, done := m.warned.LoadOrStore(c, true); !done {
			m.log.Warn("sandbox limit NOT applied: its cgroup controller is not available in the cgroup v2 hierarchy "+
				"(set require_limits to refuse such sandboxes)", "controller", c, "cgroup", string(m.parent))
		}
	}
	return nil
}

func (m *Manager) applyLimits(cg cgroup, l Limits) error {
	if l.MemoryMax > 0 && m.ctrl[ControllerMemory] {
		if err := cg.write("memory.max", strconv.FormatInt(l.MemoryMax, 10)); err != nil {
			return err
		}
		// Without swap the limit is the limit; on OOM the whole server goes, not a random child.
		_ = cg.write("memory.swap.max", "0")
		_ = cg.write("memory.oom.group", "1")
	}
	if l.PidsMax > 0 && m.ctrl[ControllerPids] {
		if err := cg.write("pids.max", strconv.FormatInt(l.PidsMax, 10)); err != nil {
			return err
		}
	}
	if l.CPUMax > 0 && m.ctrl[ControllerCPU] {
		const period = 100000
		quota := max(int64(l.CPUMax*period), 1000)
		if err := cg.write("cpu.max", fmt.Sprintf("%d %d", quota, period)); err != nil {
			return err
		}
	}
	return nil
}

func (m *Manager) start(id string, cg cgroup, spec Spec) (_ *Sandbox, err error) {
	if err := m.applyLimits(cg, spec.Limits); err != nil {
		return nil, fmt.Errorf("sandbox %s limits: %w", id, err)
	}
	cgid, err := cg.id()
	if err != nil {
		return nil, err
	}
	if w := m.opts.Watcher; w != nil {
		if err := w.WatchSandbox(cgid, id, spec.Server); err != nil {
			return nil, fmt.Errorf("sandbox %s: watch its cgroup in the kernel: %w", id, err)
		}
		defer func() {
			if err != nil {
				w.UnwatchSandbox(cgid)
			}
		}()
	}
	dir, err := os.Open(string(cg))
	if err != nil {
		return nil, fmt.Errorf("open sandbox cgroup: %w", err)
	}
	defer dir.Close()
	var closeLater []*os.File
	defer func() {
		for _, f := range closeLater {
			f.Close()
		}
	}()
	pipe := func() (r, w *os.File) {
		if err != nil {
			return nil, nil
		}
		r, w, err = os.Pipe()
		closeLater = append(closeLater, r, w)
		return r, w
	}
	inR, inW := pipe()
	outR, outW := pipe()
	errR, errW := pipe()
	if err != nil {
		return nil, fmt.Errorf("sandbox pipes: %w", err)
	}
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Env = append([]string{}, spec.Env...) // never nil: nil would pass the gateway's environment
	cmd.Dir = spec.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:     true,
		Pdeathsig:   syscall.SIGKILL, // set after the credentials change, which would clear it
		UseCgroupFD: true,
		CgroupFD:    int(dir.Fd()),
	}
	if u := spec.User; u != nil {
		// An empty Groups list drops the gateway's supplementary groups (setgroups(0)).
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: []uint32{}}
	}
	switch spec.Network {
	case NetworkHost:
	case NetworkNone:
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWNET
	default:
		return nil, fmt.Errorf("sandbox %s: unknown network %q (want none, or empty for the host's)", id, spec.Network)
	}
	if cmd.Err != nil {
		return nil, fmt.Errorf("sandbox command: %w", cmd.Err)
	}
	s := &Sandbox{
		id: id, server: spec.Server, cg: cg, cgroupID: cgid, cmd: cmd, m: m,
		stdin: inW, stdout: outR, done: make(chan struct{}),
		log: m.log.With("sandbox", id, "server", spec.Server),
	}
	s.settled.Store(true) // never frozen
	// Under the lock, so that Close either sees the sandbox or has refused it.
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, errors.New("sandbox manager closed")
	}
	done := make(chan error, 1)
	m.spawn <- spawnReq{cmd: cmd, done: done}
	if err := <-done; err != nil {
		m.mu.Unlock()
		return nil, fmt.Errorf("start %s in sandbox %s: %w", spec.Path, id, err)
	}
	m.live[id] = s
	m.mu.Unlock()
	closeLater = []*os.File{inR, outW, errW} // the child's ends; ours live on
	stderrDone := make(chan struct{})
	go s.readStderr(errR, spec.Stderr, stderrDone)
	go s.reap(stderrDone)
	s.log.Info("sandbox started", "pid", cmd.Process.Pid, "cgroup", string(cg), "cgroup_id", cgid, "command", spec.Path)
	return s, nil
}

// Sandbox is one server process in its own cgroup.
type Sandbox struct {
	id, server string
	cg         cgroup
	cgroupID   uint64
	cmd        *exec.Cmd
	m          *Manager
	log        *slog.Logger
	stdin      *os.File
	stdout     *os.File

	frozen atomic.Bool
	// settled is false from the start of a freeze or thaw until cgroup.events confirms it, and
	// stays false when it failed: the quarantine's reconciliation tries again.
	settled  atomic.Bool
	freezeMu sync.Mutex // serializes freeze and thaw
	stopOnce sync.Once
	stopErr  error

	done    chan struct{} // closed once the process has exited and the cgroup is gone
	exitErr error         // the process's exit status (from Wait)
	tailMu  sync.Mutex
	tail    []byte // the last bytes of stderr, for exit reports
}

// ID returns the sandbox id (the cgroup's directory name).
func (s *Sandbox) ID() string { return s.id }

// Server returns the server name the sandbox was started for.
func (s *Sandbox) Server() string { return s.server }

// CgroupPath returns the sandbox's cgroup directory.
func (s *Sandbox) CgroupPath() string { return string(s.cg) }

// CgroupID returns the kernel's id of the sandbox's cgroup (the inode of its directory), which
// eBPF programs see as bpf_get_current_cgroup_id() for the sandbox's processes.
func (s *Sandbox) CgroupID() uint64 { return s.cgroupID }

// Pid returns the server process's pid.
func (s *Sandbox) Pid() int { return s.cmd.Process.Pid }

// Stdin is the server's standard input.
func (s *Sandbox) Stdin() *os.File { return s.stdin }

// Stdout is the server's standard output.
func (s *Sandbox) Stdout() *os.File { return s.stdout }

// Done is closed once the server process has exited and its cgroup has been killed and removed.
func (s *Sandbox) Done() <-chan struct{} { return s.done }

// ExitErr is the process's exit status after Done: nil for a clean exit.
func (s *Sandbox) ExitErr() error {
	<-s.done
	return s.exitErr
}

// StderrTail returns the last bytes the server wrote to stderr.
func (s *Sandbox) StderrTail() string {
	s.tailMu.Lock()
	defer s.tailMu.Unlock()
	return string(s.tail)
}

// Frozen reports whether the sandbox is frozen ([Sandbox.Freeze]): its traffic is refused from
// the moment a freeze begins, even one the kernel has not confirmed or that failed (fail closed).
func (s *Sandbox) Frozen() bool { return s.frozen.Load() }

// Settled reports whether the last freeze or thaw was confirmed by cgroup.events (true for a
// sandbox never frozen). A failed freeze leaves Frozen true and Settled false: the traffic stays
// refused and [Bridge.ApplyQuarantine] freezes it again.
func (s *Sandbox) Settled() bool { return s.settled.Load() }

const maxTail = 2048

func (s *Sandbox) readStderr(r *os.File, w io.Writer, done chan<- struct{}) {
	defer close(done)
	defer r.Close()
	buf := make([]byte, 32<<10)
	var line []byte
	for {
		n, err := r.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			s.tailMu.Lock()
			s.tail = append(s.tail, chunk...)
			if len(s.tail) > maxTail {
				s.tail = append(s.tail[:0], s.tail[len(s.tail)-maxTail:]...)
			}
			s.tailMu.Unlock()
			if w != nil {
				_, _ = w.Write(chunk)
			} else {
				line = append(line, chunk...)
				for {
					i := slices.Index(line, '\n')
					if i < 0 {
						break
					}
					s.log.Debug("server stderr", "line", string(line[:min(i, 4096)]))
					line = line[i+1:]
				}
				if len(line) > 4096 {
					s.log.Debug("server stderr", "line", string(line[:4096]))
					line = line[:0]
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// reap waits for the server to exit, then kills whatever it left in the cgroup and removes it.
func (s *Sandbox) reap(stderrDone <-chan struct{}) {
	err := s.cmd.Wait()
	s.exitErr = err
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if derr := s.cg.destroy(ctx); derr != nil {
		s.log.Error("sandbox cgroup not removed", "err", derr)
	}
	cancel()
	if w := s.m.opts.Watcher; w != nil {
		w.UnwatchSandbox(s.cgroupID)
	}
	select { // every writer of stderr is gone with the cgroup
	case <-stderrDone:
	case <-time.After(time.Second):
	}
	s.stdin.Close()
	s.m.mu.Lock()
	delete(s.m.live, s.id)
	s.m.mu.Unlock()
	s.log.Info("sandbox ended", "exit", exitString(err))
	close(s.done)
}

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// Freeze freezes every process of the sandbox (cgroup.freeze) and waits until the kernel reports
// the cgroup frozen. A frozen server does nothing until [Sandbox.Thaw]; it can still be stopped.
func (s *Sandbox) Freeze(ctx context.Context) error {
	return s.setFrozen(ctx, true)
}

// Thaw lets a frozen sandbox run again.
func (s *Sandbox) Thaw(ctx context.Context) error {
	return s.setFrozen(ctx, false)
}

func (s *Sandbox) setFrozen(ctx context.Context, on bool) error {
	s.freezeMu.Lock()
	defer s.freezeMu.Unlock()
	select {
	case <-s.done:
		return fmt.Errorf("sandbox %s has ended", s.id)
	default:
	}
	v := "0"
	if on {
		v = "1"
		s.frozen.Store(true) // refuse traffic from now on, before the kernel is done
	}
	s.settled.Store(false)
	if err := s.writeFreeze(v); err != nil {
		return fmt.Errorf("freeze sandbox %s: %w", s.id, err)
	}
	if !on {
		s.frozen.Store(false)
	}
	what := "thawed"
	if on {
		what = "frozen"
	}
	err := s.cg.waitFor(ctx, what, func(_, frozen bool) bool { return frozen == on })
	if err != nil {
		select {
		case <-s.done: // ended meanwhile
			return nil
		default:
		}
		return err
	}
	s.settled.Store(true)
	return nil
}

// writeFreeze writes cgroup.freeze, through the test hook when one is set.
func (s *Sandbox) writeFreeze(v string) error {
	if h := freezeFault.Load(); h != nil {
		if err := (*h)(s.id, v); err != nil {
			return err
		}
	}
	return s.cg.write("cgroup.freeze", v)
}

// freezeFault, set only by tests, runs before every cgroup.freeze write; an error it returns is
// the write's error. Root writes cgroupfs files regardless of their mode, so tests cannot make
// the kernel refuse the write itself.
var freezeFault atomic.Pointer[func(sandbox, value string) error]

// Stop ends the sandbox: it closes the server's stdin and waits up to the grace period, sends
// SIGTERM to its process group and waits again, then kills everything in the cgroup. A frozen
// sandbox is killed at once (it could not act on the first two). Stop returns once the cgroup is
// removed, or ctx ends; it may be called more than once.
func (s *Sandbox) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() { s.stopErr = s.stop(ctx) })
	return s.stopErr
}

func (s *Sandbox) stop(ctx context.Context) error {
	grace := s.m.opts.StopGrace
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-s.done:
			return true
		case <-t.C:
		case <-ctx.Done():
		}
		return false
	}
	if !s.Frozen() {
		_ = s.stdin.Close()
		if wait(grace) {
			return nil
		}
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		if wait(grace) {
			return nil
		}
	}
	if err := s.cg.write("cgroup.kill", "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop sandbox %s: %w", s.id, ctx.Err())
	}
}
