package detectors

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mcpwatch/mcpwatch/detectors/rate"
	"github.com/mcpwatch/mcpwatch/detectors/score"
)

// load reads a YAML config over the defaults, as the stage's component factory does.
func load(path string) (Config, error) {
	cfg := DefaultConfig()
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// The YAML keys are the stage's configuration language: a renamed tag silently drops an
// operator's setting, and a validation message must point at the key to fix.
func TestConfigFiles(t *testing.T) {
	full := Config{
		Rate: rate.Config{Window: time.Minute, Baseline: 0.5, Ceiling: 5, Threshold: 60, Cooldown: 2 * time.Minute, MaxPrincipals: 5000},
		Score: score.Config{Weights: score.Weights{Frequency: 1, Sensitivity: 2, Risk: 1}, PublishDelta: 2.5,
			PublishEvery: 30 * time.Second, MaxPrincipals: 5000},
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
		"config_no_frequency.yaml": {err: "score.weights.frequency: must be above 0: the enabled detectors (rate) feed only the frequency component"},
		"config_unknown_key.yaml":  {err: "yaml: unmarshal errors:\n  line 2: field score_every not found in type rate.Config"},
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

// The deprecated RateConfig must keep meaning what it meant: the pipeline and the mcpwatch
// command still build the stage from it.
func TestRateConfigForwards(t *testing.T) {
	if got := DefaultRateConfig().Config(); !reflect.DeepEqual(got, DefaultConfig()) {
		t.Fatalf("DefaultRateConfig().Config() = %+v, want DefaultConfig()", got)
	}
	old := DefaultRateConfig()
	old.ScoreEvery, old.MaxPrincipals, old.Threshold = time.Minute, 7, 0
	cfg := old.Config()
	if cfg.Score.PublishEvery != time.Minute || cfg.Score.MaxPrincipals != 7 || cfg.Rate.MaxPrincipals != 7 {
		t.Fatalf("converted %+v", cfg)
	}
	if err := old.Validate(); err == nil || err.Error() != "rate.threshold: must be in (0, 100], got 0" {
		t.Fatalf("Validate: %v", err)
	}
}
