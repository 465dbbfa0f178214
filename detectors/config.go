package detectors

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// RateConfig configures the [Rate] detector. Start from [DefaultRateConfig]: zero values are not
// replaced by defaults, because zero is a meaningful baseline.
type RateConfig struct {
	// Window is the sliding window over which calls are counted, in event time.
	Window time.Duration
	// Baseline is the call rate (calls/s) considered normal: at or below it the score is 0.
	Baseline float64
	// Ceiling is the call rate (calls/s) that scores 100.
	Ceiling float64
	// Threshold is the lowest score (0–100] that yields a finding.
	Threshold float64
	// Cooldown is the least event time between two findings about one principal, unless the
	// score rises by at least [RearmRise] over the last finding's.
	Cooldown time.Duration
	// ScoreEvery bounds how often a principal's score record is republished for changes smaller
	// than [ScoreDelta]; changes of ScoreDelta or more are published at once.
	ScoreEvery time.Duration
	// MaxPrincipals bounds the principals tracked. Past it the least recently seen principal is
	// forgotten.
	MaxPrincipals int
}

const (
	// RearmRise is how much a principal's score must rise over its last finding to yield a new
	// finding inside the cooldown.
	RearmRise = 20
	// ScoreDelta is the score change that publishes a score record at once.
	ScoreDelta = 5
	// maxWindowEntries bounds the timestamps one principal's window may hold, whatever the config.
	maxWindowEntries = 1 << 20
	// maxWindow bounds the window: longer horizons are a profile's job, not a rate's.
	maxWindow = 24 * time.Hour
)

// DefaultRateConfig returns the defaults: 10s window, 2 calls/s normal, 20 calls/s scores 100,
// findings from score 50 at most every 30s per principal.
func DefaultRateConfig() RateConfig {
	return RateConfig{
		Window:        10 * time.Second,
		Baseline:      2,
		Ceiling:       20,
		Threshold:     50,
		Cooldown:      30 * time.Second,
		ScoreEvery:    10 * time.Second,
		MaxPrincipals: 100_000,
	}
}

// Validate reports a config the detector cannot work with.
func (c RateConfig) Validate() error {
	var errs []error
	finite := func(name string, v float64) bool {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			errs = append(errs, fmt.Errorf("rate: %s must be a finite number, got %v", name, v))
			return false
		}
		return true
	}
	if c.Window < time.Millisecond || c.Window > maxWindow {
		errs = append(errs, fmt.Errorf("rate: window must be between 1ms and %s, got %s", maxWindow, c.Window))
	}
	if finite("baseline", c.Baseline) && c.Baseline < 0 {
		errs = append(errs, fmt.Errorf("rate: baseline must not be negative, got %g", c.Baseline))
	}
	if finite("ceiling", c.Ceiling) && finite("baseline", c.Baseline) && c.Ceiling <= c.Baseline {
		errs = append(errs, fmt.Errorf("rate: ceiling (%g/s) must be above baseline (%g/s)", c.Ceiling, c.Baseline))
	}
	if finite("threshold", c.Threshold) && (c.Threshold <= 0 || c.Threshold > 100) {
		errs = append(errs, fmt.Errorf("rate: threshold must be in (0, 100], got %g", c.Threshold))
	}
	if c.Cooldown < 0 {
		errs = append(errs, fmt.Errorf("rate: cooldown must not be negative, got %s", c.Cooldown))
	}
	if c.ScoreEvery < 0 {
		errs = append(errs, fmt.Errorf("rate: score interval must not be negative, got %s", c.ScoreEvery))
	}
	if c.MaxPrincipals < 1 {
		errs = append(errs, fmt.Errorf("rate: max principals must be at least 1, got %d", c.MaxPrincipals))
	}
	if len(errs) == 0 && c.windowCap() > maxWindowEntries {
		errs = append(errs, fmt.Errorf("rate: ceiling × window × 2 = %d timestamps per principal, more than %d: lower the ceiling or the window",
			c.windowCap(), maxWindowEntries))
	}
	return errors.Join(errs...)
}

// windowCap is the most timestamps kept per principal: twice what the ceiling rate fills the
// window with. Above it the score is 100 anyway, so only the call count in the summary becomes a
// lower bound.
func (c RateConfig) windowCap() int {
	n := math.Ceil(2 * c.Ceiling * c.Window.Seconds())
	if n > maxWindowEntries+1 {
		return maxWindowEntries + 1
	}
	return max(int(n), 16)
}
