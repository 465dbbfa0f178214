package response

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/approval"
	"github.com/mcpwatch/mcpwatch/internal/control"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/obs"
	"github.com/mcpwatch/mcpwatch/response/playbook"
)

// More action statuses of playbook decisions.
const (
	// StatusSuppressed: the same action on the same target was decided within the playbook's
	// dedup window; nothing was published.
	StatusSuppressed = "suppressed"
	// StatusDryRun: the playbook is in dry run; the control it would publish is in the detail.
	StatusDryRun = "dry_run"
	// StatusPending: the action waits for approval; the request is in the detail.
	StatusPending = "pending"
	// StatusDenied: an approver denied the action, or its approval timed out to deny.
	StatusDenied = "denied"
)

// decider holds what deciding under playbooks needs besides the finding: the playbooks in force,
// the dedup and escalation memory of each findings partition this consumer owns, and the controls
// in force (to never weaken one).
type decider struct {
	store *playbook.Store
	// controls follows the control topic; nil in unit tests that give none.
	controls *control.Store

	mu    sync.Mutex
	state map[part]*playbook.State
	// published remembers the controls this responder published but may not yet have read back
	// from the control topic, so two findings of one batch do not weaken each other's control.
	published map[string]published
}

// published is a control this responder published, and when.
type published struct {
	id      string
	expires *time.Time
	at      time.Time
}

// publishedFor is how long [decider.published] remembers a control: long enough for the control
// topic follower to have read it back.
const publishedFor = time.Minute

// part is a partition of an input topic (findings or scores).
type part struct {
	topic string
	p     int32
}

func newDecider(store *playbook.Store, controls *control.Store) *decider {
	return &decider{store: store, controls: controls, state: map[part]*playbook.State{}, published: map[string]published{}}
}

// stateOf returns partition p's memory, creating it; d.mu must be held.
func (d *decider) stateOf(p part) *playbook.State {
	st := d.state[p]
	if st == nil {
		st = playbook.NewState(0)
		if d.controls != nil {
			st.WithLifted(d.lifted)
		}
		d.state[p] = st
	}
	return st
}

// lifted reports whether an operator lifted the control an action publishes after last and no
// later than now (finding times), by the tombstone's time on the control topic.
func (d *decider) lifted(tenant string, kind playbook.Kind, scope playbook.Scope, target string, last, now time.Time) bool {
	k, ok := controlKinds[kind]
	if !ok {
		return false
	}
	at, ok := d.controls.LiftedAt(event.Control{Kind: k.control, Scope: event.ControlScope(scope), Tenant: tenant, Value: target}.Key())
	return ok && at.After(last) && !at.After(now)
}

// controlKinds maps playbook action kinds to what they publish.
var controlKinds = map[playbook.Kind]struct {
	control event.ControlKind
	action  event.ActionKind
}{
	playbook.KindRevoke:      {event.ControlRevoke, event.ActionRevoke},
	playbook.KindQuarantine:  {event.ControlQuarantine, event.ActionQuarantine},
	playbook.KindBlockEgress: {event.ControlBlockEgress, event.ActionBlockEgress},
	playbook.KindStepUp:      {event.ControlStepUp, event.ActionStepUp},
}

// Decide applies the playbooks in force to f, the finding at partition of the findings topic, and
// returns the controls to publish and an action record for every decision that is not a
// notification (the notify stage delivers those). It has no side effects besides the decider's
// memory.
//
// A threat score is decided as the finding [playbook.FromScore] makes of it (see [Responder.DecideScore]).
//
// Deduplication and escalation count in finding time, not wall-clock time, so the memory of a
// partition is a pure function of its findings: a consumer that takes the partition over rebuilds
// it by reading them again ([Responder.Rebuild]). Expiry counts from the finding's time too, as
// for the threshold revocation: a late or replayed finding acts only for what is left.
func (r *Responder) Decide(partition int32, f *event.Finding) ([]*event.Control, []*event.Action) {
	return r.decide(part{r.names.Findings, partition}, f)
}

// DecideScore is [Responder.Decide] for a threat score at partition of the scores topic. Scores
// come often (one per principal per scoring), so only decisions that publish a control, or would
// in dry run, are recorded as actions; a suppressed or stale score decision is only counted.
func (r *Responder) DecideScore(partition int32, s *event.Score) ([]*event.Control, []*event.Action) {
	d := r.decideScore(partition, s)
	return d.ctls, d.acts
}

func (r *Responder) decideScore(partition int32, s *event.Score) decisions {
	d := r.decideAll(part{r.names.Scores, partition}, playbook.FromScore(s))
	kept := d.acts[:0]
	for _, a := range d.acts {
		if a.Status == StatusSucceeded || a.Status == StatusDryRun || a.Status == StatusPending {
			kept = append(kept, a)
		} else {
			r.m.actions.WithLabelValues(string(a.Kind), a.Status).Inc()
		}
	}
	d.acts = kept
	return d
}

func (r *Responder) decide(at part, f *event.Finding) ([]*event.Control, []*event.Action) {
	out := r.decideAll(at, f)
	return out.ctls, out.acts
}

// decided is what deciding one finding publishes: controls, action records, and approval
// requests for the actions that wait for one.
type decisions struct {
	ctls []*event.Control
	acts []*event.Action
	reqs []*approval.Request
}

func (r *Responder) decideAll(at part, f *event.Finding) decisions {
	d := r.dec
	now := r.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	var out decisions
	for _, dec := range d.store.Set().Evaluate(f, d.stateOf(at), f.Time) {
		ctl, a, req := r.one(f, dec, now)
		if ctl != nil {
			out.ctls = append(out.ctls, ctl)
		}
		if a != nil {
			out.acts = append(out.acts, a)
		}
		if req != nil {
			out.reqs = append(out.reqs, req)
		}
	}
	return out
}

// one turns a decision into what it publishes; d.mu must be held.
func (r *Responder) one(f *event.Finding, dec playbook.Decision, now time.Time) (*event.Control, *event.Action, *approval.Request) {
	d := r.dec
	k, ok := controlKinds[dec.Kind]
	if !ok {
		return nil, nil, nil // notify: the notify stage's
	}
	a := r.action(f, k.action, now)
	// An escalation may decide the same kind on the same target as the action it escalates (a
	// permanent revocation after a one-hour one): its records need ids of their own.
	what := dec.Playbook + "/" + string(dec.Kind) + "/" + string(dec.Scope) + "/" + dec.Target
	if dec.Escalated {
		what += "/escalated"
	}
	a.ID = derivedID(f.ID, "action/"+what)
	a.Scope, a.Actor, a.Playbook, a.Reason = event.ControlScope(dec.Scope), "playbook:"+dec.Playbook, dec.Playbook, dec.Reason
	var expires *time.Time
	if !dec.Expires.IsZero() {
		e := dec.Expires.UTC()
		expires, a.Expires = &e, &e
	}
	c := &event.Control{
		ID:   derivedID(f.ID, "control/"+what),
		Time: now.UTC(), Kind: k.control, Scope: event.ControlScope(dec.Scope), Tenant: f.Tenant, Value: dec.Target,
		Reason: dec.Reason, FindingID: f.ID, Actor: a.Actor, Expires: expires,
	}
	a.Target = c.Key()
	switch {
	case dec.Suppressed:
		a.Status, a.Detail = StatusSuppressed, "the same action on "+c.Key()+" was decided within the dedup window"
	case r.isStale(f, now, a):
	case expires != nil && !now.Before(*expires):
		a.Status, a.Detail = StatusSkipped, fmt.Sprintf("would have expired at %s", expires.Format(time.RFC3339))
	case dec.DryRun:
		a.Status, a.Detail, a.DryRun = StatusDryRun, "dry run: would publish "+c.Key(), true
	default:
		if id, why := d.stronger(c, now); id != "" {
			// The target is already held at least as long: the action has its effect without
			// publishing, which would shorten the control in force.
			a.Status, a.Detail, a.ControlID, a.Attempts = StatusSucceeded, why, id, 1
			break
		}
		if spec := dec.Approval; spec != nil {
			req := approvalRequest(f, dec, c, spec, what)
			a.Status, a.ControlID = StatusPending, approvedControlID(req.ID)
			a.Detail = fmt.Sprintf("waiting for %d of %v approvals until %s (on timeout: %s); approval request %s",
				spec.Required, spec.Approvers, req.Deadline.Format(time.RFC3339), spec.OnTimeout, req.ID)
			return nil, a, req
		}
		d.remember(c, now)
		a.Status, a.ControlID, a.Attempts = StatusSucceeded, c.ID, 1
		return c, a, nil
	}
	return nil, a, nil
}

// approvedControlID is the id of the control an approved request publishes.
func approvedControlID(requestID string) string { return derivedID(requestID, "control/approved") }

// approvalRequest is the request that puts c up for approval. Its id and times derive from the
// finding, so a redelivered finding writes the same request (the same record key, which
// compaction keeps once) and approvers sign one hash.
func approvalRequest(f *event.Finding, dec playbook.Decision, c *event.Control, spec *playbook.ApprovalSpec, what string) *approval.Request {
	onTimeout := approval.Deny
	if spec.OnTimeout == "approve" {
		onTimeout = approval.Approve
	}
	k := controlKinds[dec.Kind]
	req := approval.NewActionRequest(f.Tenant, "playbook:"+dec.Playbook, "playbook "+dec.Playbook, dec.Reason,
		approval.PlaybookAction{Kind: k.action, Scope: c.Scope, Value: c.Value, Playbook: dec.Playbook, FindingID: f.ID,
			Subject: f.Principal.Subject, Expires: c.Expires},
		spec.Approvers, spec.Required, f.Time.UTC(), spec.Timeout, onTimeout)
	req.ID = derivedID(f.ID, "approval/"+what)
	return req
}

// isStale marks a as skipped when f is older than MaxAge.
func (r *Responder) isStale(f *event.Finding, now time.Time, a *event.Action) bool {
	why, stale := r.stale(f, now)
	if stale {
		a.Status, a.Detail = StatusSkipped, why
	}
	return stale
}

// stronger returns the id of a control under c's key that lasts at least as long as c and is in
// force (on the control topic, or published by this responder), and says so; "" if there is
// none. Replacing it would shorten it, e.g. a one-hour revocation replacing an escalation's
// permanent one.
func (d *decider) stronger(c *event.Control, now time.Time) (id, why string) {
	outlasts := func(exp *time.Time) bool {
		return exp == nil || (c.Expires != nil && !exp.Before(*c.Expires))
	}
	// A control with c's own id is this finding's, published before a redelivery: publishing it
	// again changes nothing, and the redelivered finding must yield the same records.
	if p, ok := d.published[c.Key()]; ok && p.id != c.ID && (p.expires == nil || now.Before(*p.expires)) && outlasts(p.expires) && !d.liftedAfter(c.Key(), p.at) {
		return p.id, "already in force at least as long: " + c.Key() + " " + until(p.expires)
	}
	if d.controls != nil {
		if cur, ok := d.controls.Get(c.Key()); ok && cur.ID != c.ID && cur.Active(now) && outlasts(cur.Expires) {
			return cur.ID, "already in force at least as long: " + c.Key() + " " + until(cur.Expires)
		}
	}
	return "", ""
}

// liftedAfter reports whether key's control was lifted (a tombstone on the control topic) after
// at: a control this responder published and an operator then lifted is not in force.
func (d *decider) liftedAfter(key string, at time.Time) bool {
	if d.controls == nil {
		return false
	}
	lt, ok := d.controls.LiftedAt(key)
	return ok && lt.After(at)
}

// remember records a published control; with a control follower, entries older than
// publishedFor are dropped once there are many (the follower has them).
func (d *decider) remember(c *event.Control, now time.Time) {
	if d.controls != nil && len(d.published) >= 1024 {
		for k, p := range d.published {
			if now.Sub(p.at) > publishedFor {
				delete(d.published, k)
			}
		}
	}
	d.published[c.Key()] = published{id: c.ID, expires: c.Expires, at: now}
}

func until(exp *time.Time) string {
	if exp == nil {
		return "(permanent)"
	}
	return "until " + exp.UTC().Format(time.RFC3339)
}

// forget drops the memory of partitions this consumer no longer owns.
func (d *decider) forget(m map[string][]int32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for topic, parts := range m {
		for _, p := range parts {
			delete(d.state, part{topic, p})
		}
	}
}

// rebuild replays the findings of a partition this consumer was just given into its memory.
func (d *decider) rebuild(p part, rec *kgo.Record) {
	var f event.Finding
	if event.Decode(rec.Value, &f) != nil {
		return // dead-lettered when it was first handled
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.store.Set().Evaluate(&f, d.stateOf(p), f.Time)
}

// Rebuild returns the stage hooks that make the playbooks' dedup and escalation memory follow the
// findings partitions: when the group gives this consumer partitions, it reads their findings
// before the group's committed offset, as far back as the longest dedup or escalation window of
// the playbooks in force reaches from the last finding handled, and evaluates them again,
// publishing nothing; when partitions are
// taken away, their memory is dropped. The records after the committed offset are then handled
// as usual, so none counts twice. The memory of score decisions is not rebuilt: the scores topic
// is compacted, so its history is gone; after a rebalance a score decision may repeat once within
// its dedup window (the control it publishes replaces its own earlier one).
func (r *Responder) Rebuild(kcfg kafkaio.Config, group string, opts ...kgo.Opt) (assigned, revoked func(context.Context, map[string][]int32)) {
	if r.dec == nil {
		return nil, nil
	}
	topic := r.names.Findings
	assigned = func(ctx context.Context, m map[string][]int32) {
		parts := m[topic]
		lookback := r.dec.store.Set().Lookback()
		if len(parts) == 0 || lookback <= 0 {
			return
		}
		start := time.Now()
		n := 0
		err := kafkaio.ReadCommittedWindow(ctx, kcfg, group, topic, parts, func(last *kgo.Record) time.Time {
			// The window ends at the last handled finding's time. Record timestamps (when the
			// finding was produced) are at or after finding times; a minute more covers a
			// producer whose clock runs behind the detector's.
			at := last.Timestamp
			var f event.Finding
			if event.Decode(last.Value, &f) == nil && f.Time.Before(at) {
				at = f.Time
			}
			return at.Add(-lookback - time.Minute)
		}, func(rec *kgo.Record) {
			r.dec.rebuild(part{topic, rec.Partition}, rec)
			n++
		}, opts...)
		if err != nil {
			// Deciding with an empty memory is better than not deciding: at worst an action is
			// repeated within its dedup window, or an escalation comes a few findings late.
			r.log.Error("playbook memory not rebuilt; these partitions start from an empty memory", "partitions", parts, "err", err)
			return
		}
		r.log.Info("playbook memory rebuilt", "partitions", parts, "findings", n, "lookback", lookback, "took", time.Since(start).Round(time.Millisecond))
	}
	revoked = func(_ context.Context, m map[string][]int32) { r.dec.forget(m) }
	return assigned, revoked
}

type playbookMetrics struct {
	reloads   *prometheus.CounterVec
	playbooks prometheus.Gauge
}

func newPlaybookMetrics(reg prometheus.Registerer) *playbookMetrics {
	m := &playbookMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_response_playbook_reloads_total",
			Help: "Reloads of the playbook file by result (ok, failed: the playbooks in force stay)."}, []string{"result"}),
		playbooks: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mcpwatch_response_playbooks",
			Help: "Playbooks in force."}),
	}
	m.reloads = obs.Register(reg, m.reloads)
	m.playbooks = obs.Register(reg, m.playbooks)
	return m
}

func (m *playbookMetrics) reloaded(err error, n int) {
	if err != nil {
		m.reloads.WithLabelValues("failed").Inc()
	} else {
		m.reloads.WithLabelValues("ok").Inc()
	}
	m.playbooks.Set(float64(n))
}
