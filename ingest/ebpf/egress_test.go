package ebpf

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// Exit codes of the "dial" helper.
const (
	dialOK    = 0
	dialEPERM = 20
	dialOther = 21
)

func init() {
	// "dial NETWORK ADDR": a TCP connect (tcp, tcp4, tcp6) or one UDP datagram sent with sendto
	// from an unconnected socket (udp), exiting dialOK, dialEPERM or dialOther.
	extraHelpers["dial"] = func(args []string) int {
		network, addr := args[0], args[1]
		var err error
		if network == "udp" {
			var pc net.PacketConn
			if pc, err = net.ListenPacket("udp", ":0"); err == nil {
				var ua *net.UDPAddr
				if ua, err = net.ResolveUDPAddr("udp", addr); err == nil {
					_, err = pc.WriteTo([]byte("x"), ua)
				}
				pc.Close()
			}
		} else {
			var c net.Conn
			if c, err = net.Dial(network, addr); err == nil {
				c.Close()
			}
		}
		switch {
		case err == nil:
			return dialOK
		case errors.Is(err, syscall.EPERM):
			return dialEPERM
		default:
			os.Stderr.WriteString(err.Error() + "\n")
			return dialOther
		}
	}
}

// egressEnv is probes and egress programs attached to a fresh parent cgroup, as a gateway
// attaches them to its sandboxes' parent.
type egressEnv struct {
	p      *Probes
	eg     *Egress
	parent string
}

func newEgressEnv(t *testing.T) egressEnv {
	t.Helper()
	root := requireKernel(t)
	p := load(t, Config{})
	parent, _ := newCgroup(t, root)
	eg, err := NewEgress(p, EgressConfig{Cgroup: parent})
	if err != nil {
		if errors.Is(err, ErrUnsupported) {
			t.Fatalf("egress programs (cgroup/connect4 works on these kernels): %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eg.Close() })
	return egressEnv{p: p, eg: eg, parent: parent}
}

// listen returns a TCP listener's address on network ("tcp4" on 127.0.0.1, "tcp6" on ::1) that
// accepts and closes connections until the test ends.
func listen(t *testing.T, network string) netip.AddrPort {
	t.Helper()
	host := "127.0.0.1:0"
	if network == "tcp6" {
		host = "[::1]:0"
	}
	ln, err := net.Listen(network, host)
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
	return netip.MustParseAddrPort(ln.Addr().String())
}

func listenUDP(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

// dial runs the dial helper in the cgroup at cg and returns its exit code and pid.
func dial(t *testing.T, cg, network string, addr netip.AddrPort) (int, int) {
	t.Helper()
	cmd := helperCmd(t, cg, "dial", network, addr.String())
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("dial helper: %v %s", err, out)
	}
	code := cmd.ProcessState.ExitCode()
	if code == dialOther {
		t.Logf("dial %s %s from %s: %s", network, addr, cg, out)
	}
	return code, cmd.Process.Pid
}

func expectDial(t *testing.T, cg, network string, addr netip.AddrPort, want int) int {
	t.Helper()
	got, pid := dial(t, cg, network, addr)
	if got != want {
		t.Errorf("dial %s %s from %s: exit %d, want %d (0 connected, 20 EPERM, 21 other error)", network, addr, filepath.Base(cg), got, want)
	}
	return pid
}

// denied waits for the egress_denied event of pid.
func denied(t *testing.T, p *Probes, pid int) Event {
	t.Helper()
	got := collect(t, p, func(evs []Event) bool {
		return slices.ContainsFunc(evs, func(e Event) bool { return e.Kind == KindEgressDenied && int(e.PID) == pid })
	})
	i := slices.IndexFunc(got, func(e Event) bool { return e.Kind == KindEgressDenied && int(e.PID) == pid })
	return got[i]
}

// A blocked sandbox cgroup gets EPERM on connect (and on a UDP send) to a 127.0.0.1 listener,
// while a process in another cgroup under the same parent connects; each refusal is an
// egress_denied event with the address, port and rule, and a counter; Unblock lets it connect
// again. If this fails, a quarantined MCP server can still reach the network (or loopback
// services), or refusals go unreported.
func TestEgressBlockRefusesConnect(t *testing.T) {
	env := newEgressEnv(t)
	tcp, udp := listen(t, "tcp4"), listenUDP(t)
	sb, sbID := newCgroup(t, env.parent)
	other, _ := newCgroup(t, env.parent)

	expectDial(t, sb, "tcp4", tcp, dialOK)
	if err := env.eg.Block(sbID); err != nil {
		t.Fatal(err)
	}
	pid := expectDial(t, sb, "tcp4", tcp, dialEPERM)
	expectDial(t, other, "tcp4", tcp, dialOK)
	expectDial(t, "", "tcp4", tcp, dialOK) // outside the parent: the programs do not even run

	e := denied(t, env.p, pid)
	if e.Addr != tcp || e.EgressRule != EgressRuleBlocked || e.Syscall != "connect" || e.CgroupID != sbID ||
		e.WatchedCgroupID != sbID || e.Protocol != syscall.IPPROTO_TCP || e.EgressPolicy != 0 {
		t.Errorf("denied event: %s rule=%s policy=%d proto=%d", dump([]Event{e}), e.EgressRule, e.EgressPolicy, e.Protocol)
	}
	upid := expectDial(t, sb, "udp", udp, dialEPERM)
	if e := denied(t, env.p, upid); e.Addr != udp || e.Syscall != "sendmsg" || e.Protocol != syscall.IPPROTO_UDP {
		t.Errorf("denied UDP send: %s syscall=%s proto=%d", dump([]Event{e}), e.Syscall, e.Protocol)
	}
	st, err := env.eg.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.DeniedBlocked != 2 || st.DeniedNotAllowed != 0 {
		t.Errorf("stats %+v, want 2 blocked", st)
	}

	if err := env.eg.Unblock(sbID); err != nil {
		t.Fatal(err)
	}
	expectDial(t, sb, "tcp4", tcp, dialOK)
	expectDial(t, sb, "udp", udp, dialOK)
	if n := env.eg.objs.EgressCgroups.Iterate(); n.Next(new(uint64), new(egressCgroup)) {
		t.Error("unblocked cgroup left in the kernel map")
	}
}

// An allow-list lets the sandbox reach 127.0.0.1:<port A> and [::1]:<port C> and refuses
// 127.0.0.1:<port B> and [::1] on another port (rule not_allowed, with the policy id); a block
// overrides the list; ClearAllow lifts it; two sandboxes with the same rules share one copy in
// the kernel, removed with the last. If this fails, per-server allow-lists let through what they
// should refuse, refuse what they allow, or leak trie entries.
func TestEgressAllowList(t *testing.T) {
	env := newEgressEnv(t)
	a, b := listen(t, "tcp4"), listen(t, "tcp4")
	c6, d6 := listen(t, "tcp6"), listen(t, "tcp6")
	sb, sbID := newCgroup(t, env.parent)
	_, twinID := newCgroup(t, env.parent)

	rules, err := ParseAllowRules([]string{"127.0.0.1/32:" + itoa(a.Port()), "[::1]:" + itoa(c6.Port())})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint64{sbID, twinID} {
		if err := env.eg.SetAllow(id, rules); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(env.eg.policies); n != 1 {
		t.Errorf("%d policies for one rule set", n)
	}
	expectDial(t, sb, "tcp4", a, dialOK)
	pid := expectDial(t, sb, "tcp4", b, dialEPERM)
	expectDial(t, sb, "tcp6", c6, dialOK)
	pid6 := expectDial(t, sb, "tcp6", d6, dialEPERM)
	e := denied(t, env.p, pid)
	if e.Addr != b || e.EgressRule != EgressRuleNotAllowed || e.EgressPolicy == 0 || e.WatchedCgroupID != sbID {
		t.Errorf("denied event: %s rule=%s policy=%d", dump([]Event{e}), e.EgressRule, e.EgressPolicy)
	}
	if e := denied(t, env.p, pid6); e.Addr != d6 || e.EgressRule != EgressRuleNotAllowed {
		t.Errorf("denied IPv6 event: %s rule=%s", dump([]Event{e}), e.EgressRule)
	}

	// Any port of a CIDR.
	anyPort, _ := ParseAllowRules([]string{"127.0.0.0/8:*"})
	if err := env.eg.SetAllow(sbID, anyPort); err != nil {
		t.Fatal(err)
	}
	expectDial(t, sb, "tcp4", b, dialOK)
	expectDial(t, sb, "tcp6", c6, dialEPERM) // IPv6 loopback is not 127.0.0.0/8

	// A block overrides the allow-list; unblocking restores it.
	if err := env.eg.Block(sbID); err != nil {
		t.Fatal(err)
	}
	expectDial(t, sb, "tcp4", a, dialEPERM)
	if err := env.eg.Unblock(sbID); err != nil {
		t.Fatal(err)
	}
	expectDial(t, sb, "tcp4", a, dialOK)
	if err := env.eg.ClearAllow(sbID); err != nil {
		t.Fatal(err)
	}
	expectDial(t, sb, "tcp6", d6, dialOK)

	// The twin still holds the first rule set; forgetting it empties the trie.
	if err := env.eg.Forget(twinID); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, env.eg.objs.EgressAllow); n != 0 || len(env.eg.policies) != 0 {
		t.Errorf("after every cgroup left: %d trie entries, %d policies", n, len(env.eg.policies))
	}
	st, _ := env.eg.Stats()
	if st.DeniedNotAllowed != 3 || st.DeniedBlocked != 1 {
		t.Errorf("stats %+v, want 3 not allowed and 1 blocked", st)
	}
}

// A process in a cgroup nested two levels below a blocked sandbox cgroup is refused and the event
// names both its own cgroup and the sandbox's; a deeper cgroup's allow-list decides over its
// ancestor's. If this fails, an MCP server escapes a block by creating a child cgroup.
func TestEgressNestedCgroup(t *testing.T) {
	env := newEgressEnv(t)
	a, b := listen(t, "tcp4"), listen(t, "tcp4")
	sb, sbID := newCgroup(t, env.parent)
	child, childID := newCgroup(t, sb)
	grandchild, gcID := newCgroup(t, child)

	if err := env.eg.Block(sbID); err != nil {
		t.Fatal(err)
	}
	pid := expectDial(t, grandchild, "tcp4", a, dialEPERM)
	if e := denied(t, env.p, pid); e.CgroupID != gcID || e.WatchedCgroupID != sbID || e.EgressRule != EgressRuleBlocked {
		t.Errorf("nested denied event: %s", dump([]Event{e}))
	}
	if err := env.eg.Unblock(sbID); err != nil {
		t.Fatal(err)
	}

	onlyA, _ := ParseAllowRules([]string{"127.0.0.1:" + itoa(a.Port())})
	onlyB, _ := ParseAllowRules([]string{"127.0.0.1:" + itoa(b.Port())})
	if err := env.eg.SetAllow(sbID, onlyA); err != nil {
		t.Fatal(err)
	}
	expectDial(t, grandchild, "tcp4", a, dialOK)
	expectDial(t, grandchild, "tcp4", b, dialEPERM)
	if err := env.eg.SetAllow(childID, onlyB); err != nil {
		t.Fatal(err)
	}
	expectDial(t, grandchild, "tcp4", b, dialOK)
	expectDial(t, grandchild, "tcp4", a, dialEPERM)
	expectDial(t, sb, "tcp4", a, dialOK)
}

// Close detaches the egress programs: none is left in the kernel, and a cgroup that was blocked
// connects again. If this fails, a stopped gateway leaves sandboxes' (or reused cgroups') egress
// blocked, or costs every connect below the parent.
func TestEgressCloseDetaches(t *testing.T) {
	env := newEgressEnv(t)
	a := listen(t, "tcp4")
	sb, sbID := newCgroup(t, env.parent)
	if err := env.eg.Block(sbID); err != nil {
		t.Fatal(err)
	}
	expectDial(t, sb, "tcp4", a, dialEPERM)
	var ids []ebpf.ProgramID
	for _, prog := range []*ebpf.Program{env.eg.objs.EgressConnect4, env.eg.objs.EgressConnect6,
		env.eg.objs.EgressSendmsg4, env.eg.objs.EgressSendmsg6} {
		info, err := prog.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		ids = append(ids, id)
	}
	if err := env.eg.Close(); err != nil {
		t.Fatal(err)
	}
	if err := env.eg.Block(sbID); err == nil {
		t.Error("Block after Close succeeded")
	}
	expectDial(t, sb, "tcp4", a, dialOK)
	deadline := time.Now().Add(5 * time.Second)
	for left := loadedPrograms(t, ids); len(left) > 0; left = loadedPrograms(t, ids) {
		if time.Now().After(deadline) {
			t.Fatalf("egress programs still loaded after Close: %v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := env.eg.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func countKeys(t *testing.T, m *ebpf.Map) int {
	t.Helper()
	n := 0
	var k egressKey
	var v uint32
	it := m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }
