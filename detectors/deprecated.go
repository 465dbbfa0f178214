package detectors

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpwatch/mcpwatch/detectors/rate"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// The entry points in this file are transitional: they keep the pipeline and the mcpwatch command
// building until they call [Build], and will then be deleted. Do not use them in new code. They
// carry no "Deprecated:" paragraph only because staticcheck (SA1019) would then fail the lint gate
// on their callers, which live in packages this change does not touch.

// RateConfig is the detect stage's config from before detectors and the scorer were split: the
// rate detector's fields plus ScoreEvery, which is now [score.Config.PublishEvery].
//
// Transitional: use [Config] ([rate.Config] and [score.Config]) with [Build].
type RateConfig struct {
	Window        time.Duration
	Baseline      float64
	Ceiling       float64
	Threshold     float64
	Cooldown      time.Duration
	ScoreEvery    time.Duration
	MaxPrincipals int
}

// DefaultRateConfig returns the defaults of [DefaultConfig] as a RateConfig.
//
// Transitional: use [DefaultConfig].
func DefaultRateConfig() RateConfig {
	d := DefaultConfig()
	return RateConfig{Window: d.Rate.Window, Baseline: d.Rate.Baseline, Ceiling: d.Rate.Ceiling,
		Threshold: d.Rate.Threshold, Cooldown: d.Rate.Cooldown, ScoreEvery: d.Score.PublishEvery,
		MaxPrincipals: d.Rate.MaxPrincipals}
}

// Config returns c as a [Config]: the scorer gets the default weights, ScoreEvery and
// MaxPrincipals.
//
// Transitional: use [Config].
func (c RateConfig) Config() Config {
	cfg := DefaultConfig()
	cfg.Rate = rate.Config{Window: c.Window, Baseline: c.Baseline, Ceiling: c.Ceiling, Threshold: c.Threshold,
		Cooldown: c.Cooldown, MaxPrincipals: c.MaxPrincipals}
	cfg.Score.PublishEvery, cfg.Score.MaxPrincipals = c.ScoreEvery, c.MaxPrincipals
	return cfg
}

// Validate is c.Config().Validate().
//
// Transitional: use [Config.Validate].
func (c RateConfig) Validate() error { return c.Config().Validate() }

// Handler returns the detect stage's handler for cfg: [Build] of cfg.Config().
//
// Transitional: use [Build].
func Handler(names event.Topics, cfg RateConfig, reg prometheus.Registerer, log *slog.Logger) (kafkaio.Handler, error) {
	return Build(names, cfg.Config(), reg, log)
}
