package score

import (
	"errors"
	"math"
	"time"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/detectors/detect"
)

// Weights weigh the score components. Only their ratios matter: the scorer divides by the sum of
// the weights of the components its detectors feed.
type Weights struct {
	Frequency   float64 `yaml:"frequency"`
	Sensitivity float64 `yaml:"sensitivity"`
	Risk        float64 `yaml:"risk"`
}

// Of returns c's weight, 0 for an unknown component.
func (w Weights) Of(c detect.Component) float64 {
	switch c {
	case detect.Frequency:
		return w.Frequency
	case detect.Sensitivity:
		return w.Sensitivity
	case detect.Risk:
		return w.Risk
	}
	return 0
}

// Config configures the [Scorer]. Start from [DefaultConfig].
type Config struct {
	// Weights weigh the components; the defaults are the source document's formula.
	Weights Weights `yaml:"weights"`
	// PublishDelta is the score change (0–100] that publishes a score record at once.
	PublishDelta float64 `yaml:"publish_delta"`
	// PublishEvery bounds how often a principal's score record is republished for changes
	// smaller than PublishDelta, in event time. 0 publishes every change.
	PublishEvery time.Duration `yaml:"publish_every"`
	// MaxPrincipals bounds the principals scored. Past it the principal signalled least recently
	// is forgotten; its last published score stays on the scores topic.
	MaxPrincipals int `yaml:"max_principals"`
	// FindingsHalfLife is how long a finding takes to lose half its weight in the user-risk
	// component, in event time. Findings feed that component only when some detector's check
	// feeds it too; 0 leaves findings out of the score.
	FindingsHalfLife time.Duration `yaml:"findings_half_life"`
	// Evidence bounds the evidence items a score record carries, the largest contribution first.
	Evidence int `yaml:"evidence"`
}

// DefaultConfig returns the defaults: the source document's weights (0.3 frequency, 0.4
// sensitivity, 0.3 risk), publication at once for changes of 5 or more and at most every 10s
// otherwise, 100,000 principals, findings fading with a half-life of an hour, five evidence
// items per score.
func DefaultConfig() Config {
	return Config{
		Weights:          Weights{Frequency: 0.3, Sensitivity: 0.4, Risk: 0.3},
		PublishDelta:     5,
		PublishEvery:     10 * time.Second,
		MaxPrincipals:    100_000,
		FindingsHalfLife: time.Hour,
		Evidence:         5,
	}
}

// Validate reports a config the scorer cannot work with. Each error names its field by its YAML
// path ("weights.risk: must not be negative, got -1").
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, component.Fieldf(field, format, args...))
	}
	sum := 0.0
	for _, comp := range detect.Components() {
		w := c.Weights.Of(comp)
		switch {
		case math.IsNaN(w) || math.IsInf(w, 0):
			bad("weights."+string(comp), "must be a finite number, got %v", w)
		case w < 0:
			bad("weights."+string(comp), "must not be negative, got %g", w)
		default:
			sum += w
		}
	}
	if len(errs) == 0 && sum == 0 {
		bad("weights", "must not all be 0")
	}
	if math.IsNaN(c.PublishDelta) || c.PublishDelta <= 0 || c.PublishDelta > 100 {
		bad("publish_delta", "must be in (0, 100], got %v", c.PublishDelta)
	}
	if c.PublishEvery < 0 {
		bad("publish_every", "must not be negative, got %s", c.PublishEvery)
	}
	if c.FindingsHalfLife < 0 {
		bad("findings_half_life", "must not be negative, got %s", c.FindingsHalfLife)
	}
	if c.Evidence < 1 || c.Evidence > 20 {
		bad("evidence", "must be in [1, 20], got %d", c.Evidence)
	}
	if c.MaxPrincipals < 1 {
		bad("max_principals", "must be at least 1, got %d", c.MaxPrincipals)
	}
	return errors.Join(errs...)
}
