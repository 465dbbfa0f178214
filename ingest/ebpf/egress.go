package ebpf

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/prometheus/client_golang/prometheus"
)

// EgressConfig configures [NewEgress].
type EgressConfig struct {
	// Cgroup is the path of the cgroup (v2) the programs are attached to: the sandboxes' parent
	// (ingest/sandbox's Manager parent). They then run for every connect and UDP send below it
	// and decide by the egress maps, keyed by sandbox cgroup id; cgroups below it with no entry
	// (and no entered ancestor) pay a few hash lookups and pass.
	Cgroup string
	// Registerer receives mcpwatch_ebpf_egress_denied_total{rule}; nil registers none.
	Registerer prometheus.Registerer
	Log        *slog.Logger
}

// Egress enforces egress in the kernel: cgroup/connect4, connect6, sendmsg4 and sendmsg6
// programs, attached once to [EgressConfig.Cgroup], refuse with EPERM the connects and UDP sends
// of a sandbox cgroup (and its descendant cgroups) that is blocked ([Egress.Block]) or whose
// destination no rule of its allow-list ([Egress.SetAllow]) matches. Each refusal is an
// [Event] of kind [KindEgressDenied] on the [Probes]' queue and a counter. Loopback is not
// exempt. Close detaches everything. Methods are safe for concurrent use.
type Egress struct {
	log   *slog.Logger
	cfg   EgressConfig
	objs  egressObjects
	links []link.Link

	mu         sync.Mutex
	cgroups    map[uint64]egressCgroup
	policies   map[string]*egressPolicy // by the canonical rule set
	nextPolicy uint32
	closed     bool

	m *egressMetrics
}

// egressCgroup is egress.bpf.c's struct egress_cgroup.
type egressCgroup struct {
	Blocked uint32
	Policy  uint32
}

// egressPolicy is one allow-list in the trie, shared by every cgroup with the same rules (the
// sandboxes of one server).
type egressPolicy struct {
	id   uint32
	name string
	keys []egressKey
	refs int
}

var egressAttachments = []struct {
	name   string
	attach ebpf.AttachType
	prog   func(*egressPrograms) *ebpf.Program
}{
	{"connect4", ebpf.AttachCGroupInet4Connect, func(p *egressPrograms) *ebpf.Program { return p.EgressConnect4 }},
	{"connect6", ebpf.AttachCGroupInet6Connect, func(p *egressPrograms) *ebpf.Program { return p.EgressConnect6 }},
	{"sendmsg4", ebpf.AttachCGroupUDP4Sendmsg, func(p *egressPrograms) *ebpf.Program { return p.EgressSendmsg4 }},
	{"sendmsg6", ebpf.AttachCGroupUDP6Sendmsg, func(p *egressPrograms) *ebpf.Program { return p.EgressSendmsg6 }},
}

// NewEgress loads the egress programs, sharing p's ring buffer and loss counters (so refusals
// reach p's queue and the agent like every kernel event), and attaches them to cfg.Cgroup.
// Failures caused by the kernel or missing privileges (CAP_BPF and CAP_NET_ADMIN) wrap
// [ErrUnsupported].
func NewEgress(p *Probes, cfg EgressConfig) (_ *Egress, err error) {
	if p == nil {
		return nil, errors.New("ebpf egress: the probes are required: refusals are reported through their ring buffer")
	}
	if cfg.Cgroup == "" {
		return nil, errors.New("ebpf egress: no cgroup to attach to (the sandboxes' parent cgroup)")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if st, err := os.Stat(cfg.Cgroup); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("ebpf egress: cgroup %s: not a cgroup directory: %v", cfg.Cgroup, err)
	}
	e := &Egress{cfg: cfg, log: cfg.Log.With("component", "ebpf-egress"), cgroups: map[uint64]egressCgroup{},
		policies: map[string]*egressPolicy{}}
	spec, err := loadEgress()
	if err != nil {
		return nil, fmt.Errorf("ebpf egress: parse embedded object: %w", err)
	}
	spec.Maps[egressMapEvents].MaxEntries = p.objs.Events.MaxEntries()
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		egressMapEvents: p.objs.Events, egressMapStats: p.objs.Stats,
	}}
	if err := spec.LoadAndAssign(&e.objs, opts); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			e.log.Error("eBPF verifier rejected an egress program", "log", fmt.Sprintf("%+v", ve))
		}
		return nil, fmt.Errorf("%w: load egress programs (needs CAP_BPF and CAP_NET_ADMIN): %w", ErrUnsupported, err)
	}
	defer func() {
		if err != nil {
			e.detach()
			e.objs.Close()
		}
	}()
	for _, pr := range egressAttachments {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cfg.Cgroup, Attach: pr.attach, Program: pr.prog(&e.objs.egressPrograms)})
		if err != nil {
			return nil, fmt.Errorf("%w: attach cgroup/%s to %s (needs CAP_NET_ADMIN and cgroup v2): %w", ErrUnsupported, pr.name, cfg.Cgroup, err)
		}
		e.links = append(e.links, l)
	}
	e.m = newEgressMetrics(e)
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(e.m); err != nil {
			return nil, fmt.Errorf("ebpf egress: register metrics: %w", err)
		}
	}
	e.log.Info("eBPF egress programs attached", "cgroup", cfg.Cgroup)
	return e, nil
}

// Block refuses every connect and UDP send of the cgroup and the cgroups below it.
func (e *Egress) Block(cgroupID uint64) error {
	return e.update(cgroupID, func(c *egressCgroup) error { c.Blocked = 1; return nil })
}

// Unblock lifts [Egress.Block]; an allow-list set with [Egress.SetAllow] still applies.
func (e *Egress) Unblock(cgroupID uint64) error {
	return e.update(cgroupID, func(c *egressCgroup) error { c.Blocked = 0; return nil })
}

// Blocked reports whether the cgroup is blocked by [Egress.Block].
func (e *Egress) Blocked(cgroupID uint64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cgroups[cgroupID].Blocked != 0
}

// SetAllow puts the cgroup under an allow-list: only connects and UDP sends to a destination
// some rule matches pass. An empty list refuses everything. Cgroups given the same rules share
// one copy in the kernel.
func (e *Egress) SetAllow(cgroupID uint64, rules []AllowRule) error {
	rs, name := canonical(rules)
	for _, r := range rs {
		if !r.Prefix.IsValid() {
			return fmt.Errorf("ebpf egress: invalid rule %v", r)
		}
	}
	return e.update(cgroupID, func(c *egressCgroup) error {
		pol, err := e.acquire(name, rs)
		if err != nil {
			return err
		}
		if pol.id == c.Policy {
			pol.refs-- // unchanged: keep the one reference the cgroup holds
		}
		c.Policy = pol.id
		return nil
	})
}

// ClearAllow removes the cgroup's allow-list: everything passes unless it is blocked.
func (e *Egress) ClearAllow(cgroupID uint64) error {
	return e.update(cgroupID, func(c *egressCgroup) error { c.Policy = 0; return nil })
}

// Forget drops everything set for the cgroup (its sandbox ended).
func (e *Egress) Forget(cgroupID uint64) error {
	return e.update(cgroupID, func(c *egressCgroup) error { *c = egressCgroup{}; return nil })
}

// update applies change to the cgroup's entry and writes it to the kernel (deleting it when
// empty). change may acquire a new policy; the one it replaces is released only once the kernel
// points the cgroup elsewhere, so a cgroup never points at a policy with rules missing. On a
// kernel error the entry is left as it was.
func (e *Egress) update(cgroupID uint64, change func(*egressCgroup) error) error {
	if cgroupID == 0 {
		return errors.New("ebpf egress: cgroup id 0")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errors.New("ebpf egress: closed")
	}
	old := e.cgroups[cgroupID]
	c := old
	if err := change(&c); err != nil {
		return err
	}
	var err error
	if c == (egressCgroup{}) {
		if err = e.objs.EgressCgroups.Delete(cgroupID); errors.Is(err, ebpf.ErrKeyNotExist) {
			err = nil
		}
	} else {
		err = e.objs.EgressCgroups.Update(cgroupID, c, ebpf.UpdateAny)
	}
	if err != nil {
		if c.Policy != 0 && c.Policy != old.Policy {
			e.release(c.Policy) // undo change's acquire
		}
		return fmt.Errorf("ebpf egress: set cgroup %d: %w", cgroupID, err)
	}
	if old.Policy != 0 && old.Policy != c.Policy {
		e.release(old.Policy)
	}
	if c == (egressCgroup{}) {
		delete(e.cgroups, cgroupID)
	} else {
		e.cgroups[cgroupID] = c
	}
	return nil
}

// acquire returns the policy for the rule set, writing it into the trie when new; e.mu is held.
func (e *Egress) acquire(name string, rules []AllowRule) (*egressPolicy, error) {
	if p, ok := e.policies[name]; ok {
		p.refs++
		return p, nil
	}
	e.nextPolicy++
	p := &egressPolicy{id: e.nextPolicy, name: name, refs: 1}
	for _, r := range rules {
		k := keyOf(p.id, r)
		if err := e.objs.EgressAllow.Update(k, uint32(1), ebpf.UpdateAny); err != nil {
			e.deleteKeys(p.keys)
			return nil, fmt.Errorf("ebpf egress: add allow rule %s: %w", r, err)
		}
		p.keys = append(p.keys, k)
	}
	e.policies[name] = p
	return p, nil
}

// release drops one reference to the policy, removing it from the trie with the last; e.mu is
// held.
func (e *Egress) release(id uint32) {
	p := e.policyByID(id)
	if p == nil {
		return
	}
	if p.refs--; p.refs > 0 {
		return
	}
	delete(e.policies, p.name)
	e.deleteKeys(p.keys)
}

func (e *Egress) policyByID(id uint32) *egressPolicy {
	for _, p := range e.policies {
		if p.id == id {
			return p
		}
	}
	return nil
}

func (e *Egress) deleteKeys(keys []egressKey) {
	for _, k := range keys {
		if err := e.objs.EgressAllow.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			e.log.Error("remove allow rule from the kernel", "policy", k.Policy, "err", err)
		}
	}
}

// EgressStats are the refusals counted in the kernel, summed over CPUs.
type EgressStats struct {
	DeniedBlocked, DeniedNotAllowed uint64
}

// Stats reads the kernel's refusal counters.
func (e *Egress) Stats() (EgressStats, error) {
	b, err := e.perCPU(egressStatDeniedBlocked)
	if err != nil {
		return EgressStats{}, err
	}
	n, err := e.perCPU(egressStatDeniedNotAllowed)
	if err != nil {
		return EgressStats{}, err
	}
	return EgressStats{DeniedBlocked: b, DeniedNotAllowed: n}, nil
}

func (e *Egress) perCPU(idx uint32) (uint64, error) {
	var vals []uint64
	if err := e.objs.EgressStats.Lookup(idx, &vals); err != nil {
		return 0, fmt.Errorf("ebpf egress: read stats[%d]: %w", idx, err)
	}
	var sum uint64
	for _, v := range vals {
		sum += v
	}
	return sum, nil
}

// Close detaches the programs from the cgroup and frees the maps: nothing is enforced after it.
// Safe to call more than once.
func (e *Egress) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	if e.cfg.Registerer != nil {
		e.cfg.Registerer.Unregister(e.m)
	}
	return errors.Join(e.detach(), e.objs.Close())
}

func (e *Egress) detach() error {
	var errs []error
	for _, l := range e.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach egress program: %w", err))
		}
	}
	e.links = nil
	return errors.Join(errs...)
}

// egressMetrics exports the kernel's refusal counters at scrape time.
type egressMetrics struct {
	e      *Egress
	denied *prometheus.Desc
}

func newEgressMetrics(e *Egress) *egressMetrics {
	return &egressMetrics{e: e, denied: prometheus.NewDesc("mcpwatch_ebpf_egress_denied_total",
		"Connects and UDP sends the egress programs refused, by rule (blocked, not_allowed).", []string{"rule"}, nil)}
}

func (m *egressMetrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.denied }

func (m *egressMetrics) Collect(ch chan<- prometheus.Metric) {
	st, err := m.e.Stats()
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(m.denied, prometheus.CounterValue, float64(st.DeniedBlocked), EgressRuleBlocked)
	ch <- prometheus.MustNewConstMetric(m.denied, prometheus.CounterValue, float64(st.DeniedNotAllowed), EgressRuleNotAllowed)
}
