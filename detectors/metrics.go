package detectors

import "github.com/prometheus/client_golang/prometheus"

// scorerLabel is the detector label of the scorer's metrics.
const scorerLabel = "score"

// Metric families shared by the detectors and the scorer, told apart by the detector label
// (the scorer's is "score"). A family registered twice must keep its help text.
var (
	helpEvicted    = "Principals forgotten: idle (harmless) or capacity (raise the principal limit)."
	helpPrincipals = "Principals tracked in memory."
	helpErrors     = "Outputs that could not be encoded, and signals the scorer refused."
)

type detectorMetrics struct {
	observed   *prometheus.CounterVec
	findings   prometheus.Counter
	signals    prometheus.Counter
	evicted    *prometheus.CounterVec
	principals prometheus.Gauge
	errors     prometheus.Counter
	profiles   *prometheus.CounterVec
}

func newDetectorMetrics(reg prometheus.Registerer, detector string) *detectorMetrics {
	l := prometheus.Labels{"detector": detector}
	m := &detectorMetrics{
		observed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_detector_events_total",
			Help: "Events seen by the detector: counted, ignored (not its kind), late (older than its state).", ConstLabels: l},
			[]string{"result"}),
		findings: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_detector_findings_total",
			Help: "Findings emitted.", ConstLabels: l}),
		signals: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_detector_signals_total",
			Help: "Signals the detector gave the scorer.", ConstLabels: l}),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_detector_evictions_total",
			Help: helpEvicted, ConstLabels: l}, []string{"reason"}),
		principals: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mcpwatch_detector_principals",
			Help: helpPrincipals, ConstLabels: l}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_detector_errors_total",
			Help: helpErrors, ConstLabels: l}),
		profiles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_detector_profiles_total",
			Help: "Profiles checkpointed to the profiles topic, restored from it, refused (unreadable) or forgotten (partitions revoked).", ConstLabels: l},
			[]string{"op"}),
	}
	if reg != nil {
		reg.MustRegister(m.observed, m.findings, m.signals, m.evicted, m.principals, m.errors, m.profiles)
	}
	return m
}

type scorerMetrics struct {
	scores     prometheus.Counter
	evicted    *prometheus.CounterVec
	principals prometheus.Gauge
	errors     prometheus.Counter
}

func newScorerMetrics(reg prometheus.Registerer) *scorerMetrics {
	l := prometheus.Labels{"detector": scorerLabel}
	m := &scorerMetrics{
		scores: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_detector_scores_total",
			Help: "Score records emitted.", ConstLabels: l}),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_detector_evictions_total",
			Help: helpEvicted, ConstLabels: l}, []string{"reason"}),
		principals: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mcpwatch_detector_principals",
			Help: helpPrincipals, ConstLabels: l}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_detector_errors_total",
			Help: helpErrors, ConstLabels: l}),
	}
	if reg != nil {
		reg.MustRegister(m.scores, m.evicted, m.principals, m.errors)
	}
	return m
}
