//lint:file-ignore SA1019 sampling is deprecated from protocol 2026-07-28 but part of 2025-06-18 and 2025-11-25, which the bridge must still relay

package sandbox

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// serverModeEnv makes the test binary act as a sandboxed server (see [runTestServer]): no
// separate build step, and the MCP server is the official Go SDK's stdio server.
const serverModeEnv = "MCPWATCH_SANDBOX_TEST_SERVER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(serverModeEnv); mode != "" {
		os.Exit(runTestServer(mode))
	}
	goleak.VerifyTestMain(m)
}

type echoIn struct {
	Text string `json:"text"`
}

type echoOut struct {
	Echo string `json:"echo"`
}

func runTestServer(mode string) int {
	switch mode {
	case "sdk":
		s := sdk.NewServer(&sdk.Implementation{Name: "sandboxed", Version: "1.0.0"}, nil)
		sdk.AddTool(s, &sdk.Tool{Name: "echo", Description: "echoes"},
			func(_ context.Context, _ *sdk.CallToolRequest, in echoIn) (*sdk.CallToolResult, echoOut, error) {
				return nil, echoOut{Echo: in.Text}, nil
			})
		sdk.AddTool(s, &sdk.Tool{Name: "whoami", Description: "pid and environment"},
			func(context.Context, *sdk.CallToolRequest, struct{}) (*sdk.CallToolResult, any, error) {
				text := fmt.Sprintf("pid=%d env=%s", os.Getpid(), strings.Join(os.Environ(), ","))
				return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: text}}}, nil, nil
			})
		// slow reports progress and then waits for the file named in its argument to exist.
		sdk.AddTool(s, &sdk.Tool{Name: "slow", Description: "reports progress, then waits"},
			func(ctx context.Context, req *sdk.CallToolRequest, in echoIn) (*sdk.CallToolResult, any, error) {
				if err := req.Session.NotifyProgress(ctx, &sdk.ProgressNotificationParams{
					ProgressToken: req.Params.GetProgressToken(), Progress: 1, Total: 2, Message: "halfway",
				}); err != nil {
					return nil, nil, err
				}
				for {
					if _, err := os.Stat(in.Text); err == nil {
						break
					}
					select {
					case <-ctx.Done():
						return nil, nil, ctx.Err()
					case <-time.After(5 * time.Millisecond):
					}
				}
				return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "done"}}}, nil, nil
			})
		sdk.AddTool(s, &sdk.Tool{Name: "ask", Description: "asks the client's model"},
			func(ctx context.Context, req *sdk.CallToolRequest, _ struct{}) (*sdk.CallToolResult, any, error) {
				res, err := req.Session.CreateMessage(ctx, &sdk.CreateMessageParams{MaxTokens: 10,
					Messages: []*sdk.SamplingMessage{{Role: "user", Content: &sdk.TextContent{Text: "2+2?"}}}})
				if err != nil {
					return nil, nil, err
				}
				return &sdk.CallToolResult{Content: []sdk.Content{res.Content}}, nil, nil
			})
		fmt.Fprintln(os.Stderr, "sandboxed: started")
		if err := s.Run(context.Background(), &sdk.StdioTransport{}); err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintln(os.Stderr, "sandboxed:", err)
		}
		return 0
	case "cat": // echoes lines
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			fmt.Println(sc.Text())
		}
		return 0
	case "stubborn": // starts a grandchild, prints its pid, ignores the end of input and SIGTERM
		signal.Ignore(syscall.SIGTERM)
		exe, _ := os.Executable()
		c := exec.Command(exe, "-test.run=^$")
		c.Env = append(os.Environ(), serverModeEnv+"=sleep")
		if err := c.Start(); err != nil {
			return 1
		}
		fmt.Println(c.Process.Pid)
		_, _ = io.Copy(io.Discard, os.Stdin)
		time.Sleep(time.Minute)
		return 0
	case "ids": // who and where it runs, then echoes like cat
		var names []string
		ifaces, err := net.Interfaces()
		if err != nil {
			return 1
		}
		for _, i := range ifaces {
			up := "down"
			if i.Flags&net.FlagUp != 0 {
				up = "up"
			}
			names = append(names, i.Name+":"+up)
		}
		groups, _ := os.Getgroups()
		fmt.Printf("uid=%d gid=%d groups=%v net=%s\n", os.Getuid(), os.Getgid(), groups, strings.Join(names, ","))
		_, _ = io.Copy(io.Discard, os.Stdin)
		return 0
	case "sleep":
		signal.Ignore(syscall.SIGTERM)
		time.Sleep(time.Minute)
		return 0
	}
	return 2
}

// testBinary is the command that runs the test binary as a server in mode, and its environment.
func testBinary(t *testing.T, mode string) (string, []string, []string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe, []string{"-test.run=^$"}, []string{serverModeEnv + "=" + mode, "MARKER=sandboxed"}
}

// requireCgroup2 returns the cgroup v2 mount, or skips the test (fails it under CI=true) when
// there is none or the test cannot manage cgroups (not root).
func requireCgroup2(t *testing.T) string {
	t.Helper()
	root, err := FindCgroup2()
	if err == nil && os.Geteuid() != 0 {
		err = errors.New("managing cgroups needs root")
	}
	if err != nil {
		if testenv.InCI() {
			t.Fatalf("cgroup v2 sandboxes cannot be tested: %v", err)
		}
		t.Skipf("cgroup v2 sandboxes cannot be tested: %v", err)
	}
	return root
}

func testParent(t *testing.T) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "mcpwatch-test-" + hex.EncodeToString(b[:])
}

func newManager(t *testing.T, mutate ...func(*Options)) *Manager {
	t.Helper()
	requireCgroup2(t)
	// A generous grace: a race-instrumented child on a loaded machine can take over a second to
	// notice the end of its input and exit; tests of the kill path set their own.
	opts := Options{Parent: testParent(t), StopGrace: 5 * time.Second, Log: slog.New(slog.DiscardHandler)}
	for _, f := range mutate {
		f(&opts)
	}
	m, err := NewManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("close manager: %v", err)
		}
		if _, err := os.Stat(m.Parent()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("parent cgroup %s left behind: %v", m.Parent(), err)
		}
	})
	return m
}

func start(t *testing.T, m *Manager, mode string, l Limits) *Sandbox {
	t.Helper()
	path, args, env := testBinary(t, mode)
	s, err := m.Start(Spec{Server: "files", Path: path, Args: args, Env: env, Limits: l})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// cgroupOf reads the cgroup v2 path of a process from /proc/<pid>/cgroup.
func cgroupOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			return p
		}
	}
	t.Fatalf("no cgroup v2 line in %s", b)
	return ""
}

func procStatus(t *testing.T, pid int, key string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// alive reports whether pid runs; a zombie (dead, its parent not yet reaping it) does not.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, after, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(after, "Z") && !strings.HasPrefix(after, "X")
}

func readLine(t *testing.T, r *bufio.Reader, within time.Duration) (string, bool) {
	t.Helper()
	ch := make(chan string, 1)
	go func() {
		l, _ := r.ReadString('\n')
		ch <- l
	}()
	select {
	case l := <-ch:
		return strings.TrimSpace(l), true
	case <-time.After(within):
		return "", false
	}
}

// The sandbox is what the eBPF filter, the quarantine and the limits all rely on: if the process
// ran outside its cgroup, under another id, with privileges it could regain, with the gateway's
// environment, or survived its stop, the isolation would be fiction.
func TestSandboxLifecycle(t *testing.T) {
	root := requireCgroup2(t)
	m := newManager(t)
	s := start(t, m, "cat", Limits{})
	pid := s.Pid()

	rel, _ := filepath.Rel(root, s.CgroupPath())
	if got := cgroupOf(t, pid); got != "/"+rel {
		t.Fatalf("process in cgroup %q, want %q", got, "/"+rel)
	}
	if !strings.HasPrefix(s.ID(), "files-") || filepath.Base(s.CgroupPath()) != s.ID() {
		t.Fatalf("id %q, cgroup %s", s.ID(), s.CgroupPath())
	}
	var st syscall.Stat_t
	if err := syscall.Stat(s.CgroupPath(), &st); err != nil || st.Ino != s.CgroupID() || s.CgroupID() == 0 {
		t.Fatalf("cgroup id %d, inode %d (%v)", s.CgroupID(), st.Ino, err)
	}
	if got := procStatus(t, pid, "NoNewPrivs"); got != "1" {
		t.Errorf("NoNewPrivs %q, want 1", got)
	}
	if pgid, _ := syscall.Getpgid(pid); pgid != pid {
		t.Errorf("process group %d, want its own (%d)", pgid, pid)
	}
	environ, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if got := strings.Split(strings.TrimRight(string(environ), "\x00"), "\x00"); len(got) != 2 || got[1] != "MARKER=sandboxed" {
		t.Errorf("environment %q: want exactly the given one", got)
	}

	out := bufio.NewReader(s.Stdout())
	if _, err := s.Stdin().WriteString("one\n"); err != nil {
		t.Fatal(err)
	}
	if l, ok := readLine(t, out, 10*time.Second); !ok || l != "one" {
		t.Fatalf("echo %q %v", l, ok)
	}

	ctx := context.Background()
	if err := s.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	if _, frozen, _ := cgroup(s.CgroupPath()).events(); !frozen || !s.Frozen() {
		t.Fatal("cgroup.events does not say frozen")
	}
	if _, err := s.Stdin().WriteString("two\n"); err != nil {
		t.Fatal(err)
	}
	// A frozen process cannot answer; the line must wait for the thaw.
	ch := make(chan string, 1)
	go func() {
		l, _ := out.ReadString('\n')
		ch <- strings.TrimSpace(l)
	}()
	select {
	case l := <-ch:
		t.Fatalf("frozen sandbox answered %q", l)
	case <-time.After(300 * time.Millisecond):
	}
	if err := s.Thaw(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-ch:
		if l != "two" {
			t.Fatalf("after thaw %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer after thaw")
	}

	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.ExitErr(); err != nil {
		t.Errorf("cat should exit cleanly on end of input: %v", err)
	}
	if _, err := os.Stat(s.CgroupPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup not removed: %v", err)
	}
	if alive(pid) {
		t.Error("process alive after Stop")
	}
	if len(m.Sandboxes()) != 0 {
		t.Error("manager still lists the sandbox")
	}
}

// A server that ignores the end of its input and SIGTERM, and has a child of its own, must still
// be gone after Stop, child included: cgroup.kill is the backstop that reaches every process.
// A server given a user runs as that user with none of the gateway's groups, and one given no
// network sees no interface but a down loopback: a compromised server can neither use the
// gateway's privileges nor reach anything.
func TestUserAndNetwork(t *testing.T) {
	m := newManager(t)
	exe := testenv.WorldExecutable(t)
	_, args, env := testBinary(t, "ids")
	nobody := &User{UID: 65534, GID: 65534}
	for _, tc := range []struct {
		name string
		spec Spec
		want string
	}{
		{"nobody without network", Spec{User: nobody, Network: NetworkNone}, "uid=65534 gid=65534 groups=[] net=lo:down"},
		{"defaults", Spec{}, "uid=0 gid=0 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec
			spec.Server, spec.Path, spec.Args, spec.Env, spec.Dir = "files", exe, args, env, filepath.Dir(exe)
			s, err := m.Start(spec)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = s.Stop(context.Background()) }()
			l, ok := readLine(t, bufio.NewReader(s.Stdout()), 10*time.Second)
			if !ok || !strings.HasPrefix(l, tc.want) {
				t.Fatalf("server says %q, want %q...", l, tc.want)
			}
			if got := procStatus(t, s.Pid(), "Uid"); spec.User != nil && got != "65534\t65534\t65534\t65534" {
				t.Errorf("/proc status Uid %q", got)
			}
			own, _ := os.Readlink("/proc/self/ns/net")
			theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", s.Pid()))
			if err != nil || (theirs == own) != (spec.Network == NetworkHost) {
				t.Errorf("network namespace %s (%v), the gateway's %s", theirs, err, own)
			}
			if rel := "/" + strings.TrimPrefix(s.CgroupPath(), requireCgroup2(t)+"/"); cgroupOf(t, s.Pid()) != rel {
				t.Errorf("process in cgroup %s, want %s", cgroupOf(t, s.Pid()), rel)
			}
		})
	}
	if _, err := m.Start(Spec{Server: "files", Path: exe, Network: "bridge"}); err == nil || !strings.Contains(err.Error(), `unknown network "bridge"`) {
		t.Fatalf("unknown network: %v", err)
	}
}

func TestStopEscalatesToKill(t *testing.T) {
	m := newManager(t, func(o *Options) { o.StopGrace = 100 * time.Millisecond })
	s := start(t, m, "stubborn", Limits{})
	l, ok := readLine(t, bufio.NewReader(s.Stdout()), 10*time.Second)
	child, err := strconv.Atoi(l)
	if !ok || err != nil {
		t.Fatalf("grandchild pid %q: %v", l, err)
	}
	if got := cgroupOf(t, child); !strings.HasSuffix(got, "/"+s.ID()) {
		t.Fatalf("grandchild in cgroup %q, want the sandbox's", got)
	}
	begin := time.Now()
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < 200*time.Millisecond {
		t.Errorf("stopped after %v: the grace periods were skipped", d)
	}
	if alive(s.Pid()) || alive(child) {
		t.Errorf("alive after Stop: server %v, grandchild %v", alive(s.Pid()), alive(child))
	}
	var ee *exec.ExitError
	if err := s.ExitErr(); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("exit %v, want killed", err)
	}
}

// After a crash the previous run's servers live on in their cgroups, unsupervised; a new manager
// on the same parent must kill and remove them, and a second live manager must be refused.
func TestStaleSandboxesRemoved(t *testing.T) {
	root := requireCgroup2(t)
	parent := testParent(t)
	stale := filepath.Join(root, parent, "files-stale")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(stale); _ = os.Remove(filepath.Join(root, parent)) })
	path, args, env := testBinary(t, "sleep")
	cmd := exec.Command(path, args...)
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited; exited <- nil })
	if err := cgroup(stale).write("cgroup.procs", strconv.Itoa(cmd.Process.Pid)); err != nil {
		t.Fatal(err)
	}

	m := newManager(t, func(o *Options) { o.Parent = parent })
	select {
	case err := <-exited:
		exited <- err
	case <-time.After(10 * time.Second):
		t.Fatal("stale server still running")
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale cgroup not removed: %v", err)
	}

	if _, err := NewManager(Options{Parent: parent, Log: slog.New(slog.DiscardHandler)}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second manager on %s: %v, want refused", m.Parent(), err)
	}
}

// Limits: applied when the hierarchy has the controllers; otherwise the sandbox starts without
// them (warned), or is refused when limits are required. Either way what the sandbox claims must
// match the cgroup files.
func TestLimits(t *testing.T) {
	m := newManager(t)
	l := Limits{MemoryMax: 256 << 20, PidsMax: 32, CPUMax: 0.5}
	s := start(t, m, "cat", l)
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	cg := cgroup(s.CgroupPath())
	have := map[string]bool{}
	for _, c := range m.Controllers() {
		have[c] = true
	}
	t.Logf("controllers enabled for sandboxes: %v", m.Controllers())
	check := func(ctrl, file, want string) {
		got, err := cg.read(file)
		switch {
		case have[ctrl] && (err != nil || got != want):
			t.Errorf("%s = %q (%v), want %q", file, got, err, want)
		case !have[ctrl] && err == nil:
			t.Errorf("%s exists though the %s controller is not enabled", file, ctrl)
		}
	}
	check(ControllerMemory, "memory.max", strconv.Itoa(256<<20))
	check(ControllerPids, "pids.max", "32")
	check(ControllerCPU, "cpu.max", "50000 100000")

	strict := newManager(t, func(o *Options) { o.RequireLimits = true })
	path, args, env := testBinary(t, "cat")
	s2, err := strict.Start(Spec{Server: "files", Path: path, Args: args, Env: env, Limits: l})
	if len(have) == 3 {
		if err != nil {
			t.Fatalf("all controllers available, yet: %v", err)
		}
		_ = s2.Stop(context.Background())
	} else if !errors.Is(err, ErrLimitsUnavailable) {
		t.Fatalf("limits required without their controllers: %v, want ErrLimitsUnavailable", err)
	}
	if len(have) < 3 {
		t.Logf("limits without controllers degrade (checked): %v", err)
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for _, name := range []string{"files", "Files DB/prod", "", "../..", strings.Repeat("x", 100)} {
		id := NewID(name)
		if seen[id] || strings.ContainsAny(id, "/ ") || strings.HasPrefix(id, ".") || len(id) > 60 || strings.HasPrefix(id, "cgroup.") {
			t.Errorf("NewID(%q) = %q", name, id)
		}
		seen[id] = true
	}
	if a, b := NewID("files"), NewID("files"); a == b || !strings.HasPrefix(a, "files-") {
		t.Errorf("ids %q %q", a, b)
	}
}

func TestParseMountinfo(t *testing.T) {
	hybrid := `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
`
	unified := "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
	escaped := "30 23 0:26 / /mnt/my\\040cgroups rw - cgroup2 none rw\n"
	for in, want := range map[string]string{hybrid: "/sys/fs/cgroup/unified", unified: "/sys/fs/cgroup", escaped: "/mnt/my cgroups"} {
		got, err := parseMountinfo(strings.NewReader(in))
		if err != nil || got != want {
			t.Errorf("parseMountinfo = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := parseMountinfo(strings.NewReader("35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")); !errors.Is(err, ErrNoCgroup2) {
		t.Errorf("no cgroup2: %v", err)
	}
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add("41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
	f.Add("30 23 0:26 / /mnt/a\\040b\\ rw - cgroup2 none rw\n")
	f.Add(" - cgroup2\n")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseMountinfo(strings.NewReader(s))
		if err == nil && p == "" && !strings.Contains(s, "cgroup2") {
			t.Fatalf("found %q in %q", p, s)
		}
	})
}
