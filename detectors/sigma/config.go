package sigma

import (
	"errors"
	"time"

	"github.com/mcpwatch/mcpwatch/component"
)

// Config configures the Sigma [Detector] (the detect stage's "sigma" section). Start from
// [DefaultConfig].
type Config struct {
	// Shipped loads mcpwatch's own rules for MCP (package rules/sigma, built into the binary)
	// beside Rules.
	Shipped bool `yaml:"shipped"`
	// Rules are rule files and directories (walked for *.yml and *.yaml), hot-reloaded.
	Rules []string `yaml:"rules"`
	// ReloadEvery is how often the rule files are checked for changes.
	ReloadEvery time.Duration `yaml:"reload_every"`
	// MaxGroups bounds the correlation groups held (see [Limits]); past it the least recently
	// updated group is forgotten.
	MaxGroups int `yaml:"max_groups"`
	// MaxValues bounds the entries of one correlation group: event times, distinct values, or
	// times per rule. A correlation whose threshold needs more is refused at load.
	MaxValues int `yaml:"max_values"`
}

// maxValuesLimit bounds max_values: 8 MB of event times per group.
const maxValuesLimit = 1 << 20

// DefaultConfig returns the defaults: the shipped rules, files checked every 10s, 10,000 groups
// of at most 1,000 entries.
func DefaultConfig() Config {
	return Config{Shipped: true, ReloadEvery: 10 * time.Second, MaxGroups: DefaultLimits.MaxGroups, MaxValues: DefaultLimits.MaxValues}
}

// Limits returns the correlation limits the config sets.
func (c Config) Limits() Limits { return Limits{MaxGroups: c.MaxGroups, MaxValues: c.MaxValues} }

// Validate reports a config the detector cannot work with; each error names its YAML key.
// Broken rule files are found when the detector loads them.
func (c Config) Validate() error {
	var errs []error
	for i, p := range c.Rules {
		if p == "" {
			errs = append(errs, component.Fieldf("rules", "entry %d is empty", i+1))
		}
	}
	if c.ReloadEvery < 100*time.Millisecond {
		errs = append(errs, component.Fieldf("reload_every", "must be at least 100ms, got %s", c.ReloadEvery))
	}
	if c.MaxGroups < 1 {
		errs = append(errs, component.Fieldf("max_groups", "must be at least 1, got %d", c.MaxGroups))
	}
	if c.MaxValues < 1 || c.MaxValues > maxValuesLimit {
		errs = append(errs, component.Fieldf("max_values", "must be between 1 and %d, got %d", maxValuesLimit, c.MaxValues))
	}
	return errors.Join(errs...)
}
