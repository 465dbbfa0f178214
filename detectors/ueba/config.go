package ueba

import (
	"errors"
	"math"
	"strings"
	"time"

	"github.com/mcpwatch/mcpwatch/component"
)

// Config configures the UEBA [Detector]. Start from [DefaultConfig]: zero values are not replaced
// by defaults.
type Config struct {
	// MaxPrincipals bounds the profiles held; past it the least recently seen is forgotten.
	MaxPrincipals int `yaml:"max_principals"`
	// MaxPeerGroups bounds the peer groups; principals of groups past it are judged without peers.
	MaxPeerGroups int `yaml:"max_peer_groups"`
	// IdleAfter forgets a principal not seen for this long (event time) and retires its signals.
	IdleAfter time.Duration `yaml:"idle_after"`
	// FindingLevel is the lowest signal value (0–100] that concludes a finding.
	FindingLevel float64 `yaml:"finding_level"`
	// Cooldown is the least event time between two findings of one check about one principal.
	Cooldown time.Duration `yaml:"cooldown"`
	// ConfidenceGate (0–1]: below it a principal's own baseline is not trusted and its peers'
	// is used instead.
	ConfidenceGate float64 `yaml:"confidence_gate"`
	// FullConfidenceCalls and FullConfidenceSpan are the history that earns full confidence:
	// confidence is the smaller of calls/FullConfidenceCalls and span/FullConfidenceSpan.
	FullConfidenceCalls int           `yaml:"full_confidence_calls"`
	FullConfidenceSpan  time.Duration `yaml:"full_confidence_span"`
	// MinPeers is how many members with a baseline a peer group needs to be trusted.
	MinPeers int `yaml:"min_peers"`
	// PeerRareFraction: a value used by fewer than this fraction of peers is peer-rare.
	PeerRareFraction float64 `yaml:"peer_rare_fraction"`
	// RuleCallsPerMinute is the normal call rate assumed when neither the principal nor its
	// peers have a baseline yet.
	RuleCallsPerMinute float64 `yaml:"rule_calls_per_minute"`
	// SignalHalfLife is how fast a check's value decays once its evidence stops.
	SignalHalfLife time.Duration `yaml:"signal_half_life"`
	// CategoryHalfLife decays categorical counts and the time-of-week histogram.
	CategoryHalfLife time.Duration `yaml:"category_half_life"`
	// MinDenials is the shortest run of consecutive denials (or distinct tools denied in
	// DenialWindow) the denials check considers.
	MinDenials   int           `yaml:"min_denials"`
	DenialWindow time.Duration `yaml:"denial_window"`
	// ConcurrentWindow is how close in time two clients, user agents or networks of one
	// principal count as concurrent.
	ConcurrentWindow time.Duration `yaml:"concurrent_window"`
	// ExfilWindow is how long after a sensitive read an egress call counts as exfiltration.
	ExfilWindow time.Duration `yaml:"exfil_window"`
	// EgressTools are globs ('*' matches anything, case-insensitive) of tool names that send
	// data out, besides calls classed "egress".
	EgressTools []string `yaml:"egress_tools"`
	// CheckpointEvery is the least event time between two checkpoints of one profile. A record
	// is about 12 KB; a restart loses at most this much of what a profile learnt (the audit
	// itself is never lost, and short windows refill within minutes).
	CheckpointEvery time.Duration `yaml:"checkpoint_every"`
	// Disabled lists checks that emit nothing.
	Disabled []string `yaml:"disabled"`
}

// DefaultConfig returns the defaults documented in the package doc.
func DefaultConfig() Config {
	return Config{
		MaxPrincipals:       100_000,
		MaxPeerGroups:       10_000,
		IdleAfter:           14 * 24 * time.Hour,
		FindingLevel:        60,
		Cooldown:            10 * time.Minute,
		ConfidenceGate:      0.8,
		FullConfidenceCalls: 50,
		FullConfidenceSpan:  time.Hour,
		MinPeers:            5,
		PeerRareFraction:    0.1,
		RuleCallsPerMinute:  30,
		SignalHalfLife:      2 * time.Minute,
		CategoryHalfLife:    14 * 24 * time.Hour,
		MinDenials:          3,
		DenialWindow:        5 * time.Minute,
		ConcurrentWindow:    2 * time.Minute,
		ExfilWindow:         10 * time.Minute,
		EgressTools:         []string{"*send_email*", "*http_post*", "*http_request*", "*upload*", "*webhook*", "*post_message*"},
		CheckpointEvery:     5 * time.Minute,
	}
}

// Validate reports a config the detector cannot work with, each error naming its YAML key.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, component.Fieldf(field, format, args...))
	}
	unit := func(field string, v float64, zeroOK bool) {
		if math.IsNaN(v) || v < 0 || v > 1 || (!zeroOK && v == 0) {
			bad(field, "must be in (0, 1], got %v", v)
		}
	}
	positive := func(field string, d time.Duration) {
		if d <= 0 {
			bad(field, "must be positive, got %s", d)
		}
	}
	if c.MaxPrincipals < 1 {
		bad("max_principals", "must be at least 1, got %d", c.MaxPrincipals)
	}
	if c.MaxPeerGroups < 1 {
		bad("max_peer_groups", "must be at least 1, got %d", c.MaxPeerGroups)
	}
	positive("idle_after", c.IdleAfter)
	if math.IsNaN(c.FindingLevel) || c.FindingLevel <= 0 || c.FindingLevel > 100 {
		bad("finding_level", "must be in (0, 100], got %v", c.FindingLevel)
	}
	if c.Cooldown < 0 {
		bad("cooldown", "must not be negative, got %s", c.Cooldown)
	}
	unit("confidence_gate", c.ConfidenceGate, false)
	if c.FullConfidenceCalls < 1 {
		bad("full_confidence_calls", "must be at least 1, got %d", c.FullConfidenceCalls)
	}
	positive("full_confidence_span", c.FullConfidenceSpan)
	if c.MinPeers < 1 {
		bad("min_peers", "must be at least 1, got %d", c.MinPeers)
	}
	unit("peer_rare_fraction", c.PeerRareFraction, false)
	if math.IsNaN(c.RuleCallsPerMinute) || math.IsInf(c.RuleCallsPerMinute, 0) || c.RuleCallsPerMinute <= 0 {
		bad("rule_calls_per_minute", "must be a positive number, got %v", c.RuleCallsPerMinute)
	}
	positive("signal_half_life", c.SignalHalfLife)
	positive("category_half_life", c.CategoryHalfLife)
	if c.MinDenials < 1 {
		bad("min_denials", "must be at least 1, got %d", c.MinDenials)
	}
	positive("denial_window", c.DenialWindow)
	positive("concurrent_window", c.ConcurrentWindow)
	positive("exfil_window", c.ExfilWindow)
	for i, g := range c.EgressTools {
		if strings.Trim(g, "*") == "" {
			bad("egress_tools", "glob %d (%q) matches every tool", i, g)
		}
	}
	positive("checkpoint_every", c.CheckpointEvery)
	for _, d := range c.Disabled {
		if checkIndex(d) < 0 {
			bad("disabled", "unknown check %q", d)
		}
	}
	return errors.Join(errs...)
}
