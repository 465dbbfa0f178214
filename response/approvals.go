package response

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/approval"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// claimant names the respond stage in the claims it writes on approved playbook requests.
const claimant = "respond"

// outcomeGrace is how long before this process started a denial or timeout may have ended and
// still be recorded by it: outcomes while the stage was down longer than that stay on the
// approvals topic only.
const outcomeGrace = 10 * time.Minute

// RunApprovals carries out the playbook actions that waited for approval, as the approvals topic
// (followed into store) decides them, until ctx ends:
//
//   - approved (M valid votes, or the deadline passed with on_timeout approve): the control is
//     published with the action record (status succeeded, who approved it), and then the request
//     is claimed, which marks it used. Publishing first makes a crash in between harmless: the
//     request is still approved after a restart and the same control (same id, same key) is
//     published again. Several replicas doing it at once publish the same records.
//   - denied or timed out to deny: an action record says so (status denied), nothing is published.
//
// produce writes records and waits for Kafka's acknowledgement.
func (r *Responder) RunApprovals(ctx context.Context, store *approval.Store, claims approval.Producer, produce func(context.Context, ...*kgo.Record) error) error {
	started := time.Now()
	handled := map[string]bool{}
	for ctx.Err() == nil {
		for _, st := range store.List(approval.Approved, approval.Denied, approval.Expired) {
			q := st.Request
			if q.Action == nil || !strings.HasPrefix(q.Requester, "playbook:") || handled[q.ID] {
				continue
			}
			if st.State != approval.Approved && st.EndedAt.Before(started.Add(-outcomeGrace)) {
				handled[q.ID] = true
				continue
			}
			recs, err := r.approvalOutcome(st)
			if err == nil {
				err = produce(ctx, recs...)
			}
			if err == nil && st.State == approval.Approved {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, _, err = approval.ClaimFirst(cctx, store, claims, q.ID, claimant)
				cancel()
			}
			if err != nil {
				r.log.Warn("approved playbook action not carried out yet; retrying", "request", q.ID, "err", err)
				continue
			}
			handled[q.ID] = true
		}
		for id := range handled {
			if _, ok := store.Get(id); !ok {
				delete(handled, id) // swept from the store: it will not come back
			}
		}
		// Sleep until the store changes, or a second passes (deadlines pass without records).
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		first := true
		_ = store.Wait(wctx, func(*approval.Store) bool { ok := !first; first = false; return ok })
		cancel()
	}
	return nil
}

// approvalOutcome is what a decided playbook request publishes: the control and its action
// record when approved, an action record when denied or expired.
func (r *Responder) approvalOutcome(st approval.Status) ([]*kgo.Record, error) {
	q, pa := st.Request, st.Request.Action
	now := r.now()
	kind := map[event.ActionKind]event.ControlKind{event.ActionRevoke: event.ControlRevoke,
		event.ActionQuarantine: event.ControlQuarantine, event.ActionBlockEgress: event.ControlBlockEgress,
		event.ActionStepUp: event.ControlStepUp}[pa.Kind]
	a := &event.Action{Time: now.UTC(), Tenant: q.Tenant, FindingID: pa.FindingID, Subject: pa.Subject, Kind: pa.Kind,
		Scope: pa.Scope, Actor: q.Requester, Playbook: pa.Playbook, Reason: q.Reason, Expires: pa.Expires,
		ControlID: approvedControlID(q.ID), LatencyMS: max(float64(now.Sub(q.Time).Microseconds())/1000, 0)}
	c := &event.Control{ID: a.ControlID, Time: now.UTC(), Kind: kind, Scope: pa.Scope, Tenant: q.Tenant, Value: pa.Value,
		FindingID: pa.FindingID, Actor: q.Requester, Expires: pa.Expires}
	a.Target = c.Key()
	key := event.ScoreKey(q.Tenant, pa.Subject)
	var out []*kgo.Record
	switch {
	case kind == "":
		return nil, fmt.Errorf("approval request %s: action kind %q publishes no control", q.ID, pa.Kind)
	case st.State == approval.Approved && pa.Expires != nil && !now.Before(*pa.Expires):
		a.ID = derivedID(q.ID, "action/expired-before-approval")
		a.Status, a.Detail = StatusSkipped, fmt.Sprintf("approved (%s) after the action would have expired at %s", st.Reason, pa.Expires.Format(time.RFC3339))
	case st.State == approval.Approved:
		a.ID = derivedID(q.ID, "action/approved")
		a.Status, a.Attempts, a.Detail = StatusSucceeded, 1, "approved: "+st.Reason
		c.Reason = q.Reason + "; approved: " + st.Reason
		cr, err := kafkaio.RecordOf(r.names.Control, c.Key(), c)
		if err != nil {
			return nil, err
		}
		out = append(out, cr)
	default:
		a.ID = derivedID(q.ID, "action/"+string(st.State))
		a.Status, a.Detail, a.ControlID = StatusDenied, string(st.State)+": "+st.Reason, ""
	}
	ar, err := kafkaio.RecordOf(r.names.Actions, key, a)
	if err != nil {
		return nil, err
	}
	f := &event.Finding{ID: pa.FindingID, Tenant: q.Tenant, Principal: event.Principal{Subject: pa.Subject}}
	r.record(a, f)
	return append(out, ar), nil
}
