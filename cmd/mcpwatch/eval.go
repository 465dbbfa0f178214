package main

import (
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/detectors"
	"github.com/mcpwatch/mcpwatch/enrich"
	"github.com/mcpwatch/mcpwatch/eval"
	"github.com/mcpwatch/mcpwatch/eval/live"
	"github.com/mcpwatch/mcpwatch/eval/traffic"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/processors"
)

// evalCmd runs the labelled-traffic evaluation offline (package eval; this wires flags and the
// real process and detect stages, which only hosts may build) or live (package eval/live).
func evalCmd(g *globals) *cobra.Command {
	var o eval.Options
	var seeds []uint
	var tune, noBaseline, isLive bool
	var lo live.Options
	var kinds []string
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Evaluate detection on seeded, labelled MCP traffic (offline, or --live through the real pipeline): recall at low FPR, AUC, TTD, vs an Isolation Forest",
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, s := range seeds {
				o.Seeds = append(o.Seeds, uint64(s))
			}
			if tune {
				o.Split = traffic.Tune
			}
			if isLive {
				return g.evalLive(cmd, o, lo, kinds)
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
	f.BoolVar(&isLive, "live", false, "run through the real pipeline on loopback: Kafka, process, detect, sink, ClickHouse, and the gateway in front of MCP servers (one seed; no baseline)")
	f.DurationVar(&lo.Test, "live-test", 4*time.Minute, "--live: the test phase's first part run in real time; attack instances are moved to start in it")
	f.IntVar(&lo.PerKind, "live-per-kind", 2, "--live: attack instances per kind")
	f.StringSliceVar(&kinds, "live-kinds", nil, "--live: scenario kinds to run (default all)")
	f.DurationVar(&lo.Drain, "live-drain", 3*time.Minute, "--live: longest wait for the pipeline to catch up")
	f.BoolVar(&tune, "tune", false, "attack the tuning half of the roster instead of the evaluation half (for tuning; report on the default)")
	return cmd
}

// evalLive runs the evaluation live: one seed (the first), --principals 60 unless given.
func (g *globals) evalLive(cmd *cobra.Command, o eval.Options, lo live.Options, kinds []string) error {
	if cmd.Flags().Changed("seeds") && len(o.Seeds) != 1 {
		return fmt.Errorf("--live runs one seed at a time (real time is expensive), got %d", len(o.Seeds))
	}
	lo.Seed, lo.Principals, lo.History, lo.Split, lo.JSONFile = o.Seeds[0], o.Principals, o.History, o.Split, o.JSONFile
	if !cmd.Flags().Changed("principals") {
		lo.Principals = 60
	}
	for _, k := range kinds {
		if !slices.Contains(traffic.Kinds, traffic.Kind(k)) {
			return fmt.Errorf("--live-kinds: unknown kind %q (want %v)", k, traffic.Kinds)
		}
		lo.Kinds = append(lo.Kinds, traffic.Kind(k))
	}
	lo.Config, lo.Migrate, lo.ReadOnly, lo.Out = g.cfg, g.migrate, g.clickhouseRO(), cmd.OutOrStdout()
	lo.Log = g.log.With("eval", "live")
	_, err := live.Run(cmd.Context(), lo)
	return err
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
