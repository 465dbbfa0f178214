package response

import (
	"context"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/response/notify"
	"github.com/mcpwatch/mcpwatch/response/playbook"
)

// WithChannels gives the notify stage the channels that playbooks' `notify: <name>` actions
// deliver to. Together with [WithPlaybooks] it makes [Responder.NotifyHandler] deliver the
// playbooks' notifications instead of one webhook per finding over the threshold.
func WithChannels(set *notify.Set) Option { return func(r *Responder) { r.chans = set } }

// notifyJob is one notification decided about a finding: a delivery to make, or (action set) a
// decision recorded without one.
type notifyJob struct {
	f       *event.Finding
	channel string
	msg     notify.Message
	action  *event.Action
	decided bool // action was made here, not by a delivery (the channel logs its own)
}

// notifications applies the playbooks to f, read at part, and returns its notify decisions.
// Suppressed (dedup window) and stale ones are recorded, not delivered; for a score, they are
// only counted, as in [Responder.DecideScore].
func (r *Responder) notifications(at part, f *event.Finding, score bool) []notifyJob {
	d := r.dec
	now := r.now()
	d.mu.Lock()
	decisions := d.store.Set().Evaluate(f, d.stateOf(at), f.Time)
	d.mu.Unlock()
	var jobs []notifyJob
	for i, dec := range decisions {
		if dec.Kind != playbook.KindNotify {
			continue
		}
		m := notify.Message{Finding: *f, Playbook: dec.Playbook, DryRun: dec.DryRun}
		// The other actions the same playbook decided about the finding, shown with it.
		for j, o := range decisions {
			if j == i || o.Playbook != dec.Playbook || o.Kind == playbook.KindNotify {
				continue
			}
			// The target as the control key the respond stage publishes; the status as decided
			// (the respond stage's own record says how it went).
			dd := notify.Decided{Kind: string(o.Kind), Status: "issued",
				Target: string(o.Kind) + "/" + string(o.Scope) + "/" + f.Tenant + "/" + o.Target}
			if !o.Expires.IsZero() {
				e := o.Expires.UTC()
				dd.Expires = &e
			}
			switch {
			case o.Suppressed:
				dd.Status = StatusSuppressed
			case o.DryRun:
				dd.Status = StatusDryRun
			case o.Approval != nil:
				dd.Status = "pending approval"
			}
			m.Actions = append(m.Actions, dd)
		}
		job := notifyJob{f: f, channel: dec.Target, msg: m}
		skip := func(status, detail string) {
			a := r.action(f, event.ActionNotify, now)
			a.ID = derivedID(f.ID, "notify/"+dec.Playbook+"/"+dec.Target)
			a.Scope, a.Target, a.Actor, a.Playbook, a.Reason = "channel", dec.Target, "playbook:"+dec.Playbook, dec.Playbook, dec.Reason
			a.Status, a.Detail, a.DryRun = status, detail, dec.DryRun
			job.action, job.decided = a, true
		}
		if dec.Suppressed {
			skip(StatusSuppressed, "a notification to "+dec.Target+" about this principal was decided within the dedup window")
		} else if why, stale := r.stale(f, now); stale {
			skip(StatusSkipped, why)
		} else if _, ok := r.chans.Channel(dec.Target); !ok {
			skip(StatusFailed, fmt.Sprintf("no notification channel named %q is configured (have %v)", dec.Target, r.chans.Names()))
		}
		if score && job.action != nil && job.action.Status != StatusFailed {
			r.m.actions.WithLabelValues(string(event.ActionNotify), job.action.Status).Inc()
			continue
		}
		jobs = append(jobs, job)
	}
	return jobs
}

// notifyPlaybooks is the notify handler's work under playbooks: decide every record's
// notifications, deliver them concurrently (WebhookConcurrency at once), and return their action
// records. A delivery interrupted by shutdown fails the batch, which is then redelivered; the
// channels drop what they already delivered (by finding id, within the process; PagerDuty by its
// dedup key).
func (r *Responder) notifyPlaybooks(ctx context.Context, recs []*kgo.Record) (kafkaio.Result, error) {
	var res kafkaio.Result
	var jobs []notifyJob
	for _, rec := range recs {
		if rec.Topic == r.names.Scores {
			var s event.Score
			if err := event.Decode(rec.Value, &s); err != nil {
				res.Dead = append(res.Dead, kafkaio.DeadLetter{Record: rec, Reason: err})
				continue
			}
			jobs = append(jobs, r.notifications(part{rec.Topic, rec.Partition}, playbook.FromScore(&s), true)...)
			continue
		}
		var f event.Finding
		if err := event.Decode(rec.Value, &f); err != nil {
			res.Dead = append(res.Dead, kafkaio.DeadLetter{Record: rec, Reason: err})
			continue
		}
		jobs = append(jobs, r.notifications(part{rec.Topic, rec.Partition}, &f, false)...)
	}
	errs := make([]error, len(jobs))
	sem := make(chan struct{}, r.cfg.WebhookConcurrency)
	var wg sync.WaitGroup
	for i := range jobs {
		j := &jobs[i]
		if j.decided {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			a, err := r.chans.Notify(ctx, j.channel, j.msg)
			if a != nil {
				a.Reason = "playbook " + j.msg.Playbook
			}
			j.action, errs[i] = a, err
		})
	}
	wg.Wait()
	for i, j := range jobs {
		if errs[i] != nil {
			return kafkaio.Result{}, errs[i]
		}
		if j.action == nil {
			continue // already delivered by this process: not recorded twice
		}
		ar, err := kafkaio.RecordOf(r.names.Actions, event.PrincipalKey(j.f.Tenant, j.f.Principal), j.action)
		if err != nil {
			return kafkaio.Result{}, kafkaio.Permanent(fmt.Errorf("encode notify action for finding %s: %w", j.f.ID, err))
		}
		if j.decided {
			r.record(j.action, j.f)
		}
		res.Out = append(res.Out, ar)
	}
	return res, nil
}

// missingChannels returns the channels the playbooks name that set does not have.
func missingChannels(s *playbook.Set, set *notify.Set) []string {
	var out []string
	for _, p := range s.Playbooks {
		for _, a := range p.Actions {
			for _, x := range []*playbook.Action{&a, escalated(&a)} {
				if x != nil && x.Kind == playbook.KindNotify {
					if _, ok := set.Channel(x.Channel); !ok {
						out = append(out, p.Name+": "+x.Channel)
					}
				}
			}
		}
	}
	return out
}

func escalated(a *playbook.Action) *playbook.Action {
	if a.Escalate == nil {
		return nil
	}
	return &a.Escalate.To
}
