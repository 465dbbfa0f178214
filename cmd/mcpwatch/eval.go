package main

import (
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/detectors"
	"github.com/mcpwatch/mcpwatch/enrich"
	"github.com/mcpwatch/mcpwatch/eval"
	"github.com/mcpwatch/mcpwatch/eval/traffic"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/processors"
)

// evalCmd runs the labelled-traffic evaluation offline: the harness is package eval; this wires
// flags and the real process and detect stages (only hosts may build stages).
func evalCmd(g *globals) *cobra.Command {
	var o eval.Options
	var seeds []uint
	var tune, noBaseline bool
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Evaluate detection on seeded, labelled MCP traffic (offline): recall at low FPR, AUC, TTD, vs an Isolation Forest",
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, s := range seeds {
				o.Seeds = append(o.Seeds, uint64(s))
			}
			if tune {
				o.Split = traffic.Tune
			}
			o.Baseline = o.Baseline && !noBaseline
			o.Out, o.Stages = cmd.OutOrStdout(), evalStages(*g.cfg.Section(string(detectors.Type)).(*detectors.Config))
			_, err := eval.Run(cmd.Context(), o)
			return err
		},
	}
	f := cmd.Flags()
	f.UintSliceVar(&seeds, "seeds", []uint{1, 2, 3}, "seeds to evaluate, each a whole run")
	f.IntVar(&o.Principals, "principals", 200, "principals of the simulated company")
	f.DurationVar(&o.History, "history", 72*time.Hour, "clean history before the test phase")
	f.StringVar(&o.JSONFile, "out", "", "write the report as JSON to this file")
	f.BoolVar(&o.Baseline, "baseline", true, "run the Isolation Forest baseline (Python with scikit-learn: scripts/peers.sh)")
	f.BoolVar(&noBaseline, "no-baseline", false, "skip the Isolation Forest baseline")
	f.StringVar(&o.Python, "python", "", "Python with scikit-learn (default: .local/eval-venv from scripts/peers.sh, else python3)")
	f.BoolVar(&tune, "tune", false, "attack the tuning half of the roster instead of the evaluation half (for tuning; report on the default)")
	return cmd
}

// evalStages are the real stages, the detect stage configured by the config file's detect
// section (the defaults without one). They log nothing: a finding per attack call would drown
// the report, which says what matters.
func evalStages(dcfg detectors.Config) eval.Stages {
	quiet := slog.New(slog.DiscardHandler)
	return eval.Stages{
		Process: func(t event.Topics, en *enrich.Enricher) kafkaio.Handler {
			return processors.Handler(t, quiet, processors.WithEnricher(en))
		},
		Detect: func(t event.Topics) (kafkaio.Handler, error) {
			return detectors.Build(t, dcfg, nil, quiet)
		},
	}
}
