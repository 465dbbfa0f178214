package detectors

import (
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/detectors/rate"
	"github.com/mcpwatch/mcpwatch/detectors/score"
	"github.com/mcpwatch/mcpwatch/detectors/ueba"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// Config configures the detect stage: its detectors and the scorer. Start from [DefaultConfig].
type Config struct {
	// Detectors names the detectors the stage runs, in order: "rate", "ueba".
	Detectors []string     `yaml:"detectors"`
	Rate      rate.Config  `yaml:"rate"`
	UEBA      ueba.Config  `yaml:"ueba"`
	Score     score.Config `yaml:"score"`
}

// DefaultConfig returns the defaults of every detector and of the scorer.
func DefaultConfig() Config {
	return Config{Detectors: []string{rate.Name, ueba.Name}, Rate: rate.DefaultConfig(), UEBA: ueba.DefaultConfig(),
		Score: score.DefaultConfig()}
}

// Validate reports a config the stage cannot work with. Each error names its field by its YAML
// path ("rate.threshold: must be in (0, 100], got 0").
func (c Config) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for _, d := range c.Detectors {
		switch {
		case d != rate.Name && d != ueba.Name:
			errs = append(errs, component.Fieldf("detectors", "unknown detector %q (known: %s, %s)", d, rate.Name, ueba.Name))
		case seen[d]:
			errs = append(errs, component.Fieldf("detectors", "%q is listed twice", d))
		}
		seen[d] = true
	}
	if len(c.Detectors) == 0 {
		errs = append(errs, component.Fieldf("detectors", "must name at least one detector"))
	}
	errs = append(errs, component.Under("rate", c.Rate.Validate()), component.Under("ueba", c.UEBA.Validate()),
		component.Under("score", c.Score.Validate()))
	return errors.Join(errs...)
}

// Build returns the detect stage's handler for cfg (see [NewHandler]), or cfg's validation error.
// reg and log may be nil.
func Build(topics event.Topics, cfg Config, reg prometheus.Registerer, log *slog.Logger) (kafkaio.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var dets []detect.Detector
	for _, name := range cfg.Detectors {
		var d detect.Detector
		var err error
		switch name {
		case rate.Name:
			d, err = rate.New(cfg.Rate)
		case ueba.Name:
			d, err = ueba.New(cfg.UEBA)
		}
		if err != nil {
			return nil, err
		}
		dets = append(dets, d)
	}
	return NewHandler(topics, dets, cfg.Score, reg, log)
}
