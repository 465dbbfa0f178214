package rate

import (
	"errors"
	"math"
	"time"

	"github.com/mcpwatch/mcpwatch/component"
)

// Config configures the [Rate] detector. Start from [DefaultConfig]: zero values are not
// replaced by defaults, because zero is a meaningful baseline.
type Config struct {
	// Window is the sliding window over which calls are counted, in event time.
	Window time.Duration `yaml:"window"`
	// Baseline is the call rate (calls/s) considered normal: at or below it the score is 0.
	Baseline float64 `yaml:"baseline"`
	// Ceiling is the call rate (calls/s) that scores 100.
	Ceiling float64 `yaml:"ceiling"`
	// Threshold is the lowest score (0–100] that yields a finding.
	Threshold float64 `yaml:"threshold"`
	// Cooldown is the least event time between two findings about one principal, unless the
	// score rises by at least [RearmRise] over the last finding's.
	Cooldown time.Duration `yaml:"cooldown"`
	// MaxPrincipals bounds the principals tracked. Past it the least recently seen principal is
	// forgotten.
	MaxPrincipals int `yaml:"max_principals"`
}

const (
	// RearmRise is how much a principal's score must rise over its last finding to yield a new
	// finding inside the cooldown.
	RearmRise = 20
	// maxWindowEntries bounds the timestamps one principal's window may hold, whatever the config.
	maxWindowEntries = 1 << 20
	// maxWindow bounds the window: longer horizons are a profile's job, not a rate's.
	maxWindow = 24 * time.Hour
)

// DefaultConfig returns the defaults: 10s window, 2 calls/s normal, 20 calls/s scores 100,
// findings from score 50 at most every 30s per principal.
func DefaultConfig() Config {
	return Config{
		Window:        10 * time.Second,
		Baseline:      2,
		Ceiling:       20,
		Threshold:     50,
		Cooldown:      30 * time.Second,
		MaxPrincipals: 100_000,
	}
}

// Validate reports a config the detector cannot work with. Each error names its field by its
// YAML key ("threshold: must be in (0, 100], got 0").
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, component.Fieldf(field, format, args...))
	}
	finite := func(field string, v float64) bool {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			bad(field, "must be a finite number, got %v", v)
			return false
		}
		return true
	}
	if c.Window < time.Millisecond || c.Window > maxWindow {
		bad("window", "must be between 1ms and %s, got %s", maxWindow, c.Window)
	}
	baseOK := finite("baseline", c.Baseline)
	if baseOK && c.Baseline < 0 {
		bad("baseline", "must not be negative, got %g", c.Baseline)
	}
	if finite("ceiling", c.Ceiling) && baseOK && c.Ceiling <= c.Baseline {
		bad("ceiling", "must be above the baseline (%g/s), got %g/s", c.Baseline, c.Ceiling)
	}
	if finite("threshold", c.Threshold) && (c.Threshold <= 0 || c.Threshold > 100) {
		bad("threshold", "must be in (0, 100], got %g", c.Threshold)
	}
	if c.Cooldown < 0 {
		bad("cooldown", "must not be negative, got %s", c.Cooldown)
	}
	if c.MaxPrincipals < 1 {
		bad("max_principals", "must be at least 1, got %d", c.MaxPrincipals)
	}
	if len(errs) == 0 && c.windowCap() > maxWindowEntries {
		bad("window", "ceiling × window × 2 = %d timestamps per principal, more than %d: lower the ceiling or the window",
			c.windowCap(), maxWindowEntries)
	}
	return errors.Join(errs...)
}

// windowCap is the most timestamps kept per principal: twice what the ceiling rate fills the
// window with. Above it the score is 100 anyway, so only the call count in the summary becomes a
// lower bound.
func (c Config) windowCap() int {
	n := math.Ceil(2 * c.Ceiling * c.Window.Seconds())
	if n > maxWindowEntries+1 {
		return maxWindowEntries + 1
	}
	return max(int(n), 16)
}
