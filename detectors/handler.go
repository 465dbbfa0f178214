package detectors

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// Handler returns the detector stage's handler: it decodes normalized events (topic
// names.Events), runs them through a [Rate] detector and returns findings for names.Findings and
// score records for names.Scores, both keyed by [event.PrincipalKey]. Records that do not decode
// are dead-lettered. reg may be nil.
//
// State is partition-local and in memory: a restarted or rebalanced consumer starts with empty
// windows, so a burst that straddles the restart is judged only on its part after it. Events
// of one principal share a partition (they are keyed by principal), so no two consumers ever
// count the same principal. Persisting the state is left to a later change.
//
// Observing is not idempotent, so Handle never returns a transient error: a retried batch would
// count its events twice.
func Handler(names event.Topics, cfg RateConfig, reg prometheus.Registerer, log *slog.Logger) (kafkaio.Handler, error) {
	r, err := NewRate(cfg)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &rateHandler{names: names, rate: r, log: log.With("detector", DetectorRate), m: newMetrics(reg, DetectorRate)}, nil
}

type rateHandler struct {
	names event.Topics
	log   *slog.Logger
	m     *metrics

	mu   sync.Mutex // the stage loop calls Handle from one goroutine; this guards misuse
	rate *Rate
	last RateStats
}

func (h *rateHandler) Handle(_ context.Context, recs []*kgo.Record) (kafkaio.Result, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var res kafkaio.Result
	for _, rec := range recs {
		var e event.Event
		if err := event.Decode(rec.Value, &e); err != nil {
			res.Dead = append(res.Dead, kafkaio.DeadLetter{Record: rec, Reason: err})
			continue
		}
		f, s := h.rate.Observe(e)
		key := event.PrincipalKey(e.Tenant, e.Principal)
		if f != nil {
			out, err := kafkaio.RecordOf(h.names.Findings, key, f)
			if err != nil {
				// Cannot happen with finite features; if it does, the evidence is parked, not lost.
				h.log.Error("finding not encodable, dead-lettering its event", "finding", f.ID, "err", err)
				res.Dead = append(res.Dead, kafkaio.DeadLetter{Record: rec, Reason: fmt.Errorf("encode finding %s: %w", f.ID, err)})
				continue
			}
			res.Out = append(res.Out, out)
			h.log.Info("finding", "id", f.ID, "principal", key, "score", f.Score, "summary", f.Summary)
		}
		if s != nil {
			if out, err := h.scoreRecord(s); err == nil {
				res.Out = append(res.Out, out)
			}
		}
	}
	expired := h.rate.Expire()
	for i := range expired {
		if out, err := h.scoreRecord(&expired[i]); err == nil {
			res.Out = append(res.Out, out)
		}
	}
	h.observeStats()
	return res, nil
}

// scoreRecord encodes a score. Scores are refreshed continually, so one that cannot be encoded
// is logged and skipped rather than dead-lettering an event that was processed.
func (h *rateHandler) scoreRecord(s *event.Score) (*kgo.Record, error) {
	out, err := kafkaio.RecordOf(h.names.Scores, s.Key(), s)
	if err != nil {
		h.log.Error("score not encodable", "principal", s.Key(), "err", err)
		h.m.errors.Inc()
	}
	return out, err
}

func (h *rateHandler) observeStats() {
	s := h.rate.Stats()
	h.m.observed.WithLabelValues("counted").Add(float64(s.Counted - h.last.Counted))
	h.m.observed.WithLabelValues("ignored").Add(float64(s.Ignored - h.last.Ignored))
	h.m.observed.WithLabelValues("late").Add(float64(s.Late - h.last.Late))
	h.m.findings.Add(float64(s.Findings - h.last.Findings))
	h.m.scores.Add(float64(s.Scores - h.last.Scores))
	h.m.evicted.WithLabelValues("idle").Add(float64(s.EvictedIdle - h.last.EvictedIdle))
	h.m.evicted.WithLabelValues("capacity").Add(float64(s.EvictedCapacity - h.last.EvictedCapacity))
	h.m.principals.Set(float64(s.Principals))
	h.last = s
}

type metrics struct {
	observed   *prometheus.CounterVec
	findings   prometheus.Counter
	scores     prometheus.Counter
	evicted    *prometheus.CounterVec
	principals prometheus.Gauge
	errors     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, detector string) *metrics {
	l := prometheus.Labels{"detector": detector}
	m := &metrics{
		observed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_detector_events_total",
			Help: "Events seen by the detector: counted, ignored (not an MCP request), late (older than the window).", ConstLabels: l},
			[]string{"result"}),
		findings: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_detector_findings_total",
			Help: "Findings emitted.", ConstLabels: l}),
		scores: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_detector_scores_total",
			Help: "Score records emitted.", ConstLabels: l}),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_detector_evictions_total",
			Help: "Principals forgotten: idle (harmless) or capacity (raise the principal limit).", ConstLabels: l},
			[]string{"reason"}),
		principals: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mcpwatch_detector_principals",
			Help: "Principals tracked in memory.", ConstLabels: l}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_detector_errors_total",
			Help: "Outputs that could not be encoded.", ConstLabels: l}),
	}
	if reg != nil {
		reg.MustRegister(m.observed, m.findings, m.scores, m.evicted, m.principals, m.errors)
	}
	return m
}
