package ebpf

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/ingest/sandbox"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// helperEnv makes the test binary act as a workload (see runHelper): the processes whose kernel
// activity the tests expect.
const helperEnv = "MCPWATCH_EBPF_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Args[len(os.Args)-2:]))
	}
	goleak.VerifyTestMain(m)
}

// extraHelpers are helper modes defined next to the tests that use them.
var extraHelpers = map[string]func(args []string) int{}

// runHelper: "act SECRET ADDR" opens SECRET, connects to ADDR and runs `/bin/sh -c 'exit 3'`;
// "wait-act" first waits for a line on stdin (the test moves it into a cgroup meanwhile).
func runHelper(mode string, args []string) int {
	if h, ok := extraHelpers[mode]; ok {
		return h(args)
	}
	if mode == "open-loop" { // "open-loop PATH N": N failing opens of PATH, from one thread
		n, _ := strconv.Atoi(args[1])
		for range n {
			if fd, err := syscall.Open(args[0], syscall.O_RDONLY, 0); err == nil {
				syscall.Close(fd)
			}
		}
		return 0
	}
	if mode == "wait-act" {
		fmt.Println("ready")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return 10
		}
	}
	secret, addr := args[0], args[1]
	f, err := os.Open(secret)
	if err != nil {
		return 11
	}
	_, _ = io.Copy(io.Discard, f)
	f.Close()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 12
	}
	c.Close()
	err = exec.Command("/bin/sh", "-c", "exit 3").Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		return 13
	}
	return 0
}

// requireKernel skips (fails under CI=true) when this process cannot load eBPF programs or
// manage cgroups; it returns the cgroup v2 mount.
func requireKernel(t *testing.T) string {
	t.Helper()
	root, err := sandbox.FindCgroup2()
	if err == nil && os.Geteuid() != 0 {
		err = errors.New("loading eBPF programs and managing cgroups needs root (or CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN)")
	}
	if err != nil {
		testenv.Missing(t, "kernel eBPF and cgroup v2", err.Error())
	}
	return root
}

func load(t *testing.T, cfg Config) *Probes {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 10 * time.Millisecond
	}
	p, err := Load(cfg)
	if err != nil {
		if errors.Is(err, ErrUnsupported) {
			testenv.Missing(t, "kernel eBPF", err.Error())
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// newCgroup creates a cgroup under parent and returns its path and id; it is removed at cleanup.
func newCgroup(t *testing.T, parent string) (string, uint64) {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	path := filepath.Join(parent, "mcpwatch-ebpf-test-"+hex.EncodeToString(b[:]))
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Processes may take a moment to leave after exiting.
		for i := 0; ; i++ {
			err := syscall.Rmdir(path)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			if i == 100 {
				t.Errorf("remove cgroup %s: %v", path, err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return path, st.Ino
}

// helperCmd returns the test binary as a helper in mode, cloned into the cgroup at cg ("" for
// the test's own cgroup).
func helperCmd(t *testing.T, cg, mode, secret, addr string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$", secret, addr)
	cmd.Env = []string{helperEnv + "=" + mode}
	if cg != "" {
		dir, err := os.Open(cg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dir.Close() })
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	}
	return cmd
}

// workload is a secret file and a listener to connect to.
type workload struct {
	secret string
	addr   netip.AddrPort
}

func newWorkload(t *testing.T) workload {
	t.Helper()
	secret := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(secret, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return workload{secret: secret, addr: netip.MustParseAddrPort(ln.Addr().String())}
}

func (w workload) run(t *testing.T, cg string) int {
	t.Helper()
	cmd := helperCmd(t, cg, "act", w.secret, w.addr.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper: %v %s", err, out)
	}
	return cmd.Process.Pid
}

// collect reads events until done says it has what it needs, or fails after a timeout.
func collect(t *testing.T, p *Probes, done func([]Event) bool) []Event {
	t.Helper()
	var got []Event
	deadline := time.After(10 * time.Second)
	for !done(got) {
		select {
		case e, ok := <-p.Events():
			if !ok {
				t.Fatal("event queue closed")
			}
			got = append(got, e)
		case <-deadline:
			t.Fatalf("timed out; got %d events:\n%s", len(got), dump(got))
		}
	}
	return got
}

func dump(evs []Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %s pid=%d ppid=%d cg=%d watched=%d comm=%q file=%q args=%q path=%q addr=%s exit=%d\n",
			e.Kind, e.PID, e.PPID, e.CgroupID, e.WatchedCgroupID, e.Comm, e.Filename, e.Args, e.Path, e.Addr, e.ExitCode)
	}
	return b.String()
}

// expectWorkload checks the events of one workload run by pid: its exec, the secret's open, the
// connect, the shell's exec and exit, its own exit — each with the given cgroup ids.
func expectWorkload(t *testing.T, got []Event, w workload, pid int, cg, watched uint64) {
	t.Helper()
	exe, _ := os.Executable()
	var exec, open, conn, shExec, shExit, exit bool
	for _, e := range got {
		mine := int(e.PID) == pid
		child := int(e.PPID) == pid
		if !mine && !child {
			continue
		}
		if e.CgroupID != cg || e.WatchedCgroupID != watched {
			t.Errorf("event %s of pid %d: cgroup %d watched %d, want %d and %d", e.Kind, e.PID, e.CgroupID, e.WatchedCgroupID, cg, watched)
		}
		switch {
		case mine && e.Kind == KindExec && e.Filename == exe && len(e.Args) == 4 && e.Args[2] == w.secret:
			exec = true
		case mine && e.Kind == KindOpen && e.Path == w.secret && e.Flags&(syscall.O_WRONLY|syscall.O_RDWR) == 0:
			open = true
		case mine && e.Kind == KindConnect && e.Addr == w.addr:
			conn = true
		case child && e.Kind == KindExec && e.Filename == "/bin/sh" && strings.Join(e.Args, " ") == "/bin/sh -c exit 3":
			shExec = true
		case child && e.Kind == KindExit && e.ExitCode == 3:
			shExit = true
		case mine && e.Kind == KindExit && e.ExitCode == 0:
			exit = true
		}
	}
	if !exec || !open || !conn || !shExec || !shExit || !exit {
		t.Errorf("pid %d: exec %v, open %v, connect %v, sh exec %v, sh exit %v, exit %v; events:\n%s",
			pid, exec, open, conn, shExec, shExit, exit, dump(got))
	}
}

func hasExit(pid int) func([]Event) bool {
	return func(evs []Event) bool {
		for _, e := range evs {
			if e.Kind == KindExit && int(e.PID) == pid {
				return true
			}
		}
		return false
	}
}

// A process in a watched cgroup that runs a shell, opens a secret and connects out produces
// exactly those events, with its pid, the path, the port and the cgroup id. If this fails, the
// probes miss or misreport what a sandboxed MCP server does.
func TestWatchedCgroupEvents(t *testing.T) {
	root := requireKernel(t)
	p := load(t, Config{})
	w := newWorkload(t)
	cg, id := newCgroup(t, root)
	if err := p.Watch(id); err != nil {
		t.Fatal(err)
	}
	pid := w.run(t, cg)
	got := collect(t, p, hasExit(pid))
	expectWorkload(t, got, w, pid, id, id)
	// The reader counts an event just after queueing it, so the last count may trail the
	// consumer by a moment: wait for the counters to settle, then compare.
	var st Stats
	for deadline := time.Now().Add(2 * time.Second); ; {
		var err error
		if st, err = p.Stats(); err != nil {
			t.Fatal(err)
		}
		if st.Read >= uint64(len(got)) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if st.Submitted < uint64(len(got)) || st.Read != uint64(len(got)) || st.ReserveFailed != 0 || st.QueueDropped != 0 {
		t.Errorf("stats %+v after %d events", st, len(got))
	}
}

// Processes outside the watched cgroups produce nothing, and one unwatched cgroup's activity
// between two watched runs never reaches the ring. If this fails, the in-kernel filter leaks the
// host's activity (cost and noise) into the pipeline.
func TestUnwatchedCgroupSilent(t *testing.T) {
	root := requireKernel(t)
	p := load(t, Config{})
	w := newWorkload(t)
	watchedCg, wid := newCgroup(t, root)
	otherCg, oid := newCgroup(t, root)
	if err := p.Watch(wid); err != nil {
		t.Fatal(err)
	}
	other := w.run(t, otherCg)
	own := w.run(t, "") // the test's own cgroup is not watched either
	barrier := w.run(t, watchedCg)
	got := collect(t, p, hasExit(barrier))
	for _, e := range got {
		if e.CgroupID == oid || int(e.PID) == other || int(e.PPID) == other || int(e.PID) == own || int(e.PPID) == own {
			t.Errorf("event from an unwatched process: %s", dump([]Event{e}))
		}
	}
	expectWorkload(t, got, w, barrier, wid, wid)

	// Unwatch: the same cgroup goes quiet.
	if err := p.Unwatch(wid); err != nil {
		t.Fatal(err)
	}
	if err := p.Unwatch(wid); err != nil {
		t.Fatalf("unwatching twice: %v", err)
	}
	again := w.run(t, watchedCg)
	if err := p.Watch(oid); err != nil {
		t.Fatal(err)
	}
	barrier = w.run(t, otherCg)
	got = collect(t, p, hasExit(barrier))
	for _, e := range got {
		if int(e.PID) == again || int(e.PPID) == again {
			t.Errorf("event from an unwatched cgroup after Unwatch: %s", dump([]Event{e}))
		}
	}
}

// A process in a cgroup nested below a watched one is seen and attributed to the watched
// ancestor; a host process moved into a watched cgroup is seen from then on. If this fails, a
// server that makes its own child cgroups, or a process that joins a sandbox, escapes monitoring.
func TestNestedAndMovedProcesses(t *testing.T) {
	root := requireKernel(t)
	p := load(t, Config{})
	w := newWorkload(t)
	parent, pid := newCgroup(t, root)
	child, cid := newCgroup(t, parent)
	grandchild, gid := newCgroup(t, child)
	if err := p.Watch(pid); err != nil {
		t.Fatal(err)
	}
	n := w.run(t, grandchild)
	got := collect(t, p, hasExit(n))
	expectWorkload(t, got, w, n, gid, pid)

	// The nearest watched ancestor wins.
	if err := p.Watch(cid); err != nil {
		t.Fatal(err)
	}
	n = w.run(t, grandchild)
	got = collect(t, p, hasExit(n))
	expectWorkload(t, got, w, n, gid, cid)

	// A host process (the test's cgroup, unwatched) moved into the watched cgroup.
	cmd := helperCmd(t, "", "wait-act", w.secret, w.addr.String())
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("helper: %q %v", line, err)
	}
	if err := os.WriteFile(filepath.Join(child, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(stdin, "go")
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	got = collect(t, p, hasExit(cmd.Process.Pid))
	var open, conn bool
	for _, e := range got {
		if int(e.PID) != cmd.Process.Pid {
			continue
		}
		if e.Kind == KindExec {
			t.Errorf("exec from before the move was reported: %s", dump([]Event{e}))
		}
		open = open || (e.Kind == KindOpen && e.Path == w.secret && e.CgroupID == cid && e.WatchedCgroupID == cid)
		conn = conn || (e.Kind == KindConnect && e.Addr == w.addr && e.CgroupID == cid)
	}
	if !open || !conn {
		t.Errorf("moved process: open %v connect %v; events:\n%s", open, conn, dump(got))
	}
}

// Close detaches and unloads every program: none of the probes' programs is left in the kernel,
// and the event queue is closed. If this fails, a stopped agent keeps costing every exec, open
// and connect on the host.
func TestCloseLeavesNothingAttached(t *testing.T) {
	requireKernel(t)
	p := load(t, Config{})
	if len(p.Attached()) < 4 {
		t.Fatalf("attached %v", p.Attached())
	}
	var ids []ebpf.ProgramID
	for _, prog := range []*ebpf.Program{p.objs.HandleExec, p.objs.HandleExit, p.objs.HandleOpen, p.objs.HandleOpenat,
		p.objs.HandleOpenat2, p.objs.HandleConnect} {
		info, err := prog.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, ok := info.ID()
		if !ok {
			t.Fatal("program without id")
		}
		ids = append(ids, id)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-p.Events(); ok {
		t.Error("event queue still open after Close")
	}
	// Programs are freed after an RCU grace period: poll briefly.
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := loadedPrograms(t, ids)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("programs still loaded after Close: %v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func loadedPrograms(t *testing.T, want []ebpf.ProgramID) []ebpf.ProgramID {
	t.Helper()
	var left []ebpf.ProgramID
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return left
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if next == w {
				left = append(left, next)
			}
		}
		id = next
	}
}

func findCgroup2() (string, error) { return sandbox.FindCgroup2() }

// newHelper returns the test binary as a helper in mode, cloned into the cgroup open as cgFD.
func newHelper(exe, mode, a, b string, cgFD int) *exec.Cmd {
	cmd := exec.Command(exe, "-test.run=^$", a, b)
	cmd.Env = []string{helperEnv + "=" + mode}
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgFD}
	return cmd
}
