package detectors

import (
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/detectors/rate"
	"github.com/mcpwatch/mcpwatch/detectors/score"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// Config configures the detect stage: its detectors and the scorer. Start from [DefaultConfig].
type Config struct {
	Rate  rate.Config  `yaml:"rate"`
	Score score.Config `yaml:"score"`
}

// DefaultConfig returns the defaults of every detector and of the scorer.
func DefaultConfig() Config {
	return Config{Rate: rate.DefaultConfig(), Score: score.DefaultConfig()}
}

// Validate reports a config the stage cannot work with. Each error names its field by its YAML
// path ("rate.threshold: must be in (0, 100], got 0").
func (c Config) Validate() error {
	scoreErr := c.Score.Validate()
	errs := []error{component.Under("rate", c.Rate.Validate()), component.Under("score", scoreErr)}
	if scoreErr == nil && c.Score.Weights.Frequency == 0 {
		errs = append(errs, component.Fieldf("score.weights.frequency", "must be above 0: the enabled detectors (rate) feed only the frequency component"))
	}
	return errors.Join(errs...)
}

// Build returns the detect stage's handler for cfg (see [NewHandler]), or cfg's validation error.
// reg and log may be nil.
func Build(topics event.Topics, cfg Config, reg prometheus.Registerer, log *slog.Logger) (kafkaio.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r, err := rate.New(cfg.Rate)
	if err != nil {
		return nil, err
	}
	return NewHandler(topics, []detect.Detector{r}, cfg.Score, reg, log)
}
