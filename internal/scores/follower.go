package scores

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// Follower keeps a [Store] in step with the compacted scores topic; see [kafkaio.Follower]. A
// gateway should not serve before it is ready: until then every principal's risk is unknown,
// which policies with max_risk deny.
type Follower = kafkaio.Follower

// NewFollower returns a follower of the scores topic into store, with the metrics
// mcpwatch_scores_* and the gauge mcpwatch_scores_principals. reg may be nil.
func NewFollower(kcfg kafkaio.Config, topic string, store *Store, reg prometheus.Registerer, log *slog.Logger, opts ...kgo.Opt) (*Follower, error) {
	f, err := kafkaio.NewFollower(kcfg, "scores", topic, store, reg, log, opts...)
	if err != nil {
		return nil, err
	}
	if reg != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mcpwatch_scores_principals",
			Help: "Principals with a known threat score."},
			func() float64 { return float64(store.Len()) }))
	}
	return f, nil
}
