package detectors

import (
	"context"
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/detectors/rate"
	"github.com/mcpwatch/mcpwatch/detectors/score"
	"github.com/mcpwatch/mcpwatch/detectors/sigma"
	"github.com/mcpwatch/mcpwatch/detectors/ueba"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// Config configures the detect stage: its detectors and the scorer. Start from [DefaultConfig].
type Config struct {
	// Detectors names the detectors the stage runs, in order: "rate", "ueba", "sigma".
	Detectors []string     `yaml:"detectors"`
	Rate      rate.Config  `yaml:"rate"`
	UEBA      ueba.Config  `yaml:"ueba"`
	Sigma     sigma.Config `yaml:"sigma"`
	Score     score.Config `yaml:"score"`
}

// DefaultConfig returns the defaults of every detector and of the scorer.
func DefaultConfig() Config {
	return Config{Detectors: []string{rate.Name, ueba.Name, sigma.Name}, Rate: rate.DefaultConfig(), UEBA: ueba.DefaultConfig(),
		Sigma: sigma.DefaultConfig(), Score: score.DefaultConfig()}
}

// Validate reports a config the stage cannot work with. Each error names its field by its YAML
// path ("rate.threshold: must be in (0, 100], got 0").
func (c Config) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for _, d := range c.Detectors {
		switch {
		case d != rate.Name && d != ueba.Name && d != sigma.Name:
			errs = append(errs, component.Fieldf("detectors", "unknown detector %q (known: %s, %s, %s)", d, rate.Name, ueba.Name, sigma.Name))
		case seen[d]:
			errs = append(errs, component.Fieldf("detectors", "%q is listed twice", d))
		}
		seen[d] = true
	}
	if len(c.Detectors) == 0 {
		errs = append(errs, component.Fieldf("detectors", "must name at least one detector"))
	}
	// Rules that would not run are a mistake worth stopping for, not a silent no-op.
	if len(c.Sigma.Rules) > 0 && !seen[sigma.Name] {
		errs = append(errs, component.Fieldf("sigma.rules", "rules are configured but %q is not in detectors", sigma.Name))
	}
	errs = append(errs, component.Under("rate", c.Rate.Validate()), component.Under("ueba", c.UEBA.Validate()),
		component.Under("sigma", c.Sigma.Validate()), component.Under("score", c.Score.Validate()))
	return errors.Join(errs...)
}

// Build returns the detect stage's handler for cfg (see [NewHandler]), or cfg's validation error.
// reg and log may be nil.
func Build(topics event.Topics, cfg Config, reg prometheus.Registerer, log *slog.Logger) (kafkaio.Handler, error) {
	h, _, err := build(topics, cfg, reg, log)
	return h, err
}

// build is [Build], also returning the loops the detectors need run beside the stage (the Sigma
// detector's rule reloads).
func build(topics event.Topics, cfg Config, reg prometheus.Registerer, log *slog.Logger) (kafkaio.Handler, []func(context.Context) error, error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	var runs []func(context.Context) error
	var dets []detect.Detector
	for _, name := range cfg.Detectors {
		var d detect.Detector
		var err error
		switch name {
		case rate.Name:
			d, err = rate.New(cfg.Rate)
		case ueba.Name:
			d, err = ueba.New(cfg.UEBA)
		case sigma.Name:
			var sd *sigma.Detector
			sd, err = sigma.New(cfg.Sigma, sigma.WithLogger(log.With("detector", sigma.Name)), sigma.WithRegisterer(reg))
			if err == nil {
				d = sd
				runs = append(runs, sd.Run)
				if len(cfg.Sigma.Rules) == 0 && !cfg.Sigma.Shipped {
					log.Warn("detector sigma has no rules (detect.sigma.rules, detect.sigma.shipped): it concludes nothing")
				}
			}
		}
		if err != nil {
			return nil, nil, err
		}
		dets = append(dets, d)
	}
	h, err := NewHandler(topics, dets, cfg.Score, reg, log)
	return h, runs, err
}
