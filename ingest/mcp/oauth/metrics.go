package oauth

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the introspection and revocation counters. A nil *metrics counts nothing.
type metrics struct {
	introspections *prometheus.CounterVec // token (opaque, jwt), result (active, inactive, error)
	cacheHits      *prometheus.CounterVec // token
	revocations    *prometheus.CounterVec // status (succeeded, failed, skipped)
	held           prometheus.Gauge
	notHeld        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		introspections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_oauth_introspections_total",
			Help: "RFC 7662 introspection requests to the authorization server, by token kind (opaque, jwt) and result " +
				"(active, inactive, error: no usable answer, the request refused)."}, []string{"token", "result"}),
		cacheHits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_oauth_introspection_cache_hits_total",
			Help: "Introspection answers reused from the cache, by token kind."}, []string{"token"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_oauth_revocations_total",
			Help: "RFC 7009 revocations at the authorization server, by status: succeeded, failed (refused by the " +
				"server), skipped (the token expired before the server could be reached)."}, []string{"status"}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mcpwatch_oauth_held_tokens",
			Help: "Live access tokens held in memory for revocation at the authorization server."}),
		notHeld: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_oauth_held_full_total",
			Help: "Access tokens not held for revocation because the bound (max held) was reached."}),
	}
	if reg == nil {
		return m
	}
	m.introspections = register(reg, m.introspections)
	m.cacheHits = register(reg, m.cacheHits)
	m.revocations = register(reg, m.revocations)
	m.held = register(reg, m.held)
	m.notHeld = register(reg, m.notHeld)
	return m
}

// register registers c, or returns the collector already registered under its name (several
// verifiers in one process, e.g. tests or routes, share the series).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if prev, ok := are.ExistingCollector.(C); ok {
				return prev
			}
		}
	}
	return c
}
