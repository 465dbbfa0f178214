package detectors

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/parser"

	"github.com/mcpwatch/mcpwatch/detectors/rate"
	"github.com/mcpwatch/mcpwatch/detectors/score"
	"github.com/mcpwatch/mcpwatch/detectors/sigma"
	"github.com/mcpwatch/mcpwatch/detectors/ueba"
)

// load reads a YAML config over the defaults, as the stage's component factory does.
func load(path string) (Config, error) {
	cfg := DefaultConfig()
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, err
	}
	// As the config loader (package app): a section with nothing in it keeps the defaults.
	if f, err := parser.ParseBytes(b, 0); err == nil && (len(f.Docs) == 0 || f.Docs[0].Body == nil) {
		return cfg, cfg.Validate()
	}
	if err := yaml.UnmarshalWithOptions(b, &cfg, yaml.Strict()); err != nil {
		return cfg, errors.New(yaml.FormatError(err, false, false))
	}
	return cfg, cfg.Validate()
}

// The YAML keys are the stage's configuration language: a renamed tag silently drops an
// operator's setting, and a validation message must point at the key to fix.
func TestConfigFiles(t *testing.T) {
	u := ueba.DefaultConfig()
	u.FindingLevel, u.ConfidenceGate, u.EgressTools, u.Disabled = 70, 0.9, []string{"*send*"}, []string{"off_hours"}
	full := Config{
		Detectors: []string{"ueba", "rate", "sigma"},
		UEBA:      u,
		Sigma:     sigma.Config{Rules: []string{"/etc/mcpwatch/rules", "extra.yml"}, ReloadEvery: 30 * time.Second, MaxGroups: 500, MaxValues: 200},
		Rate:      rate.Config{Window: time.Minute, Baseline: 0.5, Ceiling: 5, Threshold: 60, Cooldown: 2 * time.Minute, MaxPrincipals: 5000},
		Score: score.Config{Weights: score.Weights{Frequency: 1, Sensitivity: 2, Risk: 1}, PublishDelta: 2.5,
			PublishEvery: 30 * time.Second, MaxPrincipals: 5000, FindingsHalfLife: 30 * time.Minute, Evidence: 3},
	}
	partial := DefaultConfig()
	partial.Rate.Threshold, partial.Score.Weights.Risk = 70, 0.5
	cases := map[string]struct {
		want Config
		err  string
	}{
		"config_empty.yaml":         {want: DefaultConfig()},
		"config_full.yaml":          {want: full},
		"config_partial.yaml":       {want: partial},
		"config_bad_threshold.yaml": {err: "rate.threshold: must be in (0, 100], got 0"},
		"config_bad_many.yaml": {err: "rate.window: must be between 1ms and 24h0m0s, got 0s\n" +
			"rate.cooldown: must not be negative, got -1s\n" +
			"score.weights.frequency: must not be negative, got -1\n" +
			"score.publish_every: must not be negative, got -5s"},
		"config_bad_detector.yaml": {err: "detectors: unknown detector \"yara\" (known: rate, ueba, sigma)\ndetectors: \"rate\" is listed twice"},
		"config_unknown_key.yaml":  {err: "[2:3] unknown field \"score_every\""},
		"config_bad_sigma.yaml": {err: "sigma.rules: rules are configured but \"sigma\" is not in detectors\n" +
			"sigma.reload_every: must be at least 100ms, got 0s\n" +
			"sigma.max_values: must be between 1 and 1048576, got 0"},
	}
	files, _ := filepath.Glob("testdata/config_*.yaml")
	if len(files) != len(cases) {
		t.Fatalf("%d files in testdata, %d cases: every file needs a case", len(files), len(cases))
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cfg, err := load(filepath.Join("testdata", name))
			switch {
			case c.err != "":
				if err == nil || err.Error() != c.err {
					t.Fatalf("got error %v, want\n%s", err, c.err)
				}
			case err != nil:
				t.Fatal(err)
			case !reflect.DeepEqual(cfg, c.want):
				t.Fatalf("config %+v, want %+v", cfg, c.want)
			}
		})
	}
}
