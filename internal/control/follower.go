package control

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// Follower keeps a [Store] in step with the control topic; see [kafkaio.Follower]. A gateway must
// not serve before it is ready: until then it would let revoked principals through.
type Follower = kafkaio.Follower

// NewFollower returns a follower of the control topic into store, with the metrics
// mcpwatch_control_* and the gauge mcpwatch_control_active. reg may be nil.
func NewFollower(kcfg kafkaio.Config, topic string, store *Store, reg prometheus.Registerer, log *slog.Logger, opts ...kgo.Opt) (*Follower, error) {
	f, err := kafkaio.NewFollower(kcfg, "control", topic, store, reg, log, opts...)
	if err != nil {
		return nil, err
	}
	if reg != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mcpwatch_control_active",
			Help: "Controls (revocations, quarantines) in force now."},
			func() float64 { return float64(store.Active(time.Now())) }))
	}
	return f, nil
}
