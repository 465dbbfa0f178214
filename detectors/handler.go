package detectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/detectors/score"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// NewHandler returns the detect stage's handler: it decodes normalized events (topic
// topics.Events), runs each through every detector in order, returns their findings for
// topics.Findings keyed by [event.PrincipalKey], and feeds their signals to a scorer built from
// scoreCfg — the stage's only one — whose score records go to topics.Scores keyed by
// [event.Score.Key]. Records that do not decode are dead-lettered. reg and log may be nil.
//
// After each event that moves the watermark (the newest valid event time seen) every detector's
// [detect.Detector.Expire] runs, so what a batch yields does not depend on how the events were
// split into batches.
//
// State is partition-local: events of one principal share a partition (they are keyed by
// principal), so no two consumers ever judge the same principal. Stateful detectors' profiles
// go to topics.Profiles with the batch (see [Hooks] for resuming them); other state starts
// empty after a restart or a rebalance, so a burst that straddles it is judged only on its part
// after it.
//
// Observing is not idempotent, so Handle never returns a transient error: a retried batch would
// count its events twice.
func NewHandler(topics event.Topics, dets []detect.Detector, scoreCfg score.Config, reg prometheus.Registerer, log *slog.Logger) (kafkaio.Handler, error) {
	if len(dets) == 0 {
		return nil, errors.New("detectors: no detectors")
	}
	if log == nil {
		log = slog.Default()
	}
	h := &handler{topics: topics, log: log}
	infos := make([]detect.Info, len(dets))
	for i, d := range dets {
		infos[i] = d.Info()
		if infos[i].Name == scorerLabel {
			return nil, fmt.Errorf("detectors: the name %q is the scorer's", scorerLabel)
		}
	}
	sc, err := score.New(scoreCfg, infos...)
	if err != nil {
		return nil, err
	}
	h.sc, h.sm = sc, newScorerMetrics(reg)
	for i, d := range dets {
		h.dets = append(h.dets, &running{Detector: d, name: infos[i].Name,
			log: log.With("detector", infos[i].Name), m: newDetectorMetrics(reg, infos[i].Name)})
	}
	return h, nil
}

type handler struct {
	topics event.Topics
	log    *slog.Logger

	mu      sync.Mutex // the stage loop calls Handle from one goroutine; this guards misuse
	dets    []*running
	sc      *score.Scorer
	sm      *scorerMetrics
	scLast  score.Stats
	mark    time.Time // watermark: the newest valid event time seen
	hasMark bool
	out     detect.Output
	// ev is the decode target, reused for every record (see [event.DecodeReused]): its strings
	// refer to the record being judged, which detectors must not keep (see [detect.Detector]).
	ev event.Event

	profiles []*event.Profile // checkpoint scratch
	restored int              // profiles restored, for the log line
}

// running is a detector in the stage, with its metrics.
type running struct {
	detect.Detector
	name    string
	log     *slog.Logger
	m       *detectorMetrics
	last    detect.Stats
	refused bool // a refused signal was logged; later ones are only counted
}

func (h *handler) Handle(_ context.Context, recs []*kgo.Record) (kafkaio.Result, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var res kafkaio.Result
	for _, rec := range recs {
		if err := event.DecodeReused(rec.Value, &h.ev); err != nil {
			res.Dead = append(res.Dead, kafkaio.DeadLetter{Record: rec, Reason: err})
			continue
		}
		h.observe(rec, &h.ev, &res)
	}
	h.finish(&res)
	return res, nil
}

// observe runs a decoded event (read from rec) through the detectors and the scorer.
func (h *handler) observe(rec *kgo.Record, e *event.Event, res *kafkaio.Result) {
	parked := false
	for _, d := range h.dets {
		h.out.Reset()
		d.Observe(e, &h.out)
		if err := h.collect(d, res); err != nil && !parked {
			// Cannot happen with finite features; if it does, the evidence is parked, not lost.
			res.Dead = append(res.Dead, kafkaio.DeadLetter{Record: rec, Reason: err})
			parked = true
		}
	}
	if detect.ValidTime(e.Time) && (!h.hasMark || e.Time.After(h.mark)) {
		h.mark, h.hasMark = e.Time, true
		for _, d := range h.dets {
			h.out.Reset()
			d.Expire(h.mark, &h.out)
			_ = h.collect(d, res) // no record to park: collect logged and counted it
		}
		for _, s := range h.sc.Tick(h.mark) {
			h.score(s, res)
		}
	}
}

// finish ends a batch: due profiles are checkpointed and the metrics brought up to date.
func (h *handler) finish(res *kafkaio.Result) {
	if h.hasMark {
		h.checkpoint(res)
	}
	h.observeStats()
}

// score appends the record of a score to publish.
func (h *handler) score(s *event.Score, res *kafkaio.Result) {
	// Scores are refreshed continually, so one that cannot be encoded is logged and skipped
	// rather than dead-lettering an event that was processed.
	out, err := kafkaio.RecordOf(h.topics.Scores, s.Key(), s)
	if err != nil {
		h.log.Error("score not encodable", "principal", s.Key(), "err", err)
		h.sm.errors.Inc()
		return
	}
	res.Out = append(res.Out, out)
	h.sm.scores.Inc()
}

// collect turns d's output into records: signals through the scorer first, then findings, each
// recorded in its principal's user-risk and carrying the evidence behind the principal's score
// as it stands with the finding. It returns the error of a finding that could not be encoded,
// after logging it.
func (h *handler) collect(d *running, res *kafkaio.Result) error {
	for i := range h.out.Signals {
		sig := &h.out.Signals[i]
		var s *event.Score
		var err error
		if sig.Detector == d.name {
			s, err = h.sc.Apply(sig)
		} else {
			err = fmt.Errorf("%w: detector %s signals as %q", score.ErrSignal, d.name, sig.Detector)
		}
		if err != nil {
			d.m.errors.Inc()
			if !d.refused {
				d.refused = true
				d.log.Error("signal refused (later ones are only counted)", "err", err)
			}
			continue
		}
		d.m.signals.Inc()
		if s != nil {
			h.score(s, res)
		}
	}
	var ferr error
	for _, f := range h.out.Findings {
		if s := h.sc.Finding(f); s != nil {
			h.score(s, res)
		}
		f.Evidence = appendEvidence(f.Evidence, h.sc.Explain(f.Tenant, event.PrincipalID(f.Principal)))
		if f.Explanation == "" && len(f.Evidence) > 0 {
			f.Explanation = f.Summary + " — " + score.Line(f.Evidence)
		}
		key := event.PrincipalKey(f.Tenant, f.Principal)
		out, err := kafkaio.RecordOf(h.topics.Findings, key, f)
		if err != nil {
			d.log.Error("finding not encodable", "finding", f.ID, "err", err)
			d.m.errors.Inc()
			ferr = fmt.Errorf("encode finding %s: %w", f.ID, err)
			continue
		}
		res.Out = append(res.Out, out)
		d.m.findings.Inc()
		d.log.Info("finding", "id", f.ID, "principal", key, "score", f.Score, "summary", f.Summary)
	}
	return ferr
}

// appendEvidence appends the items of more that own does not already hold (the same detector,
// check and feature).
func appendEvidence(own, more []event.Evidence) []event.Evidence {
	for _, m := range more {
		dup := false
		for _, o := range own {
			if o.Detector == m.Detector && o.Check == m.Check && o.Feature == m.Feature {
				dup = true
				break
			}
		}
		if !dup {
			own = append(own, m)
		}
	}
	return own
}

func (h *handler) observeStats() {
	for _, d := range h.dets {
		s := d.Stats()
		d.m.observed.WithLabelValues("counted").Add(float64(s.Counted - d.last.Counted))
		d.m.observed.WithLabelValues("ignored").Add(float64(s.Ignored - d.last.Ignored))
		d.m.observed.WithLabelValues("late").Add(float64(s.Late - d.last.Late))
		d.m.evicted.WithLabelValues("idle").Add(float64(s.EvictedIdle - d.last.EvictedIdle))
		d.m.evicted.WithLabelValues("capacity").Add(float64(s.EvictedCapacity - d.last.EvictedCapacity))
		d.m.principals.Set(float64(s.Principals))
		d.last = s
	}
	s := h.sc.Stats()
	h.sm.evicted.WithLabelValues("idle").Add(float64(s.EvictedIdle - h.scLast.EvictedIdle))
	h.sm.evicted.WithLabelValues("capacity").Add(float64(s.EvictedCapacity - h.scLast.EvictedCapacity))
	h.sm.principals.Set(float64(s.Principals))
	h.scLast = s
}
