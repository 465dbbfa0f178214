package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/internal/pipeline"
	"github.com/mcpwatch/mcpwatch/storage"
)

// defaultRetention is what `mcpwatch retention` keeps unless told otherwise: findings and actions
// (the record of what was decided and done) longer than raw events.
const defaultRetention = "events=90,findings=365,actions=365,scores=90,events_minute=400"

// sinkFlags are the sink stage's knobs.
type sinkFlags struct {
	options   pipeline.SinkOptions
	retention string
}

func (s *sinkFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	o := &s.options
	f.IntVar(&o.BatchRows, "sink-batch-rows", 20_000, "sink: write a batch once it holds this many records")
	f.IntVar(&o.BatchBytes, "sink-batch-bytes", 16<<20, "sink: ... or this many bytes of records")
	f.DurationVar(&o.BatchDelay, "sink-batch-delay", time.Second, "sink: ... or this long after its first record arrived")
	f.DurationVar(&o.InsertTimeout, "sink-insert-timeout", time.Minute, "sink: give up on one INSERT after this long and retry the batch")
	f.Var(retentionValue{&o.Retention, &s.retention}, "sink-retention", "sink: enforce ClickHouse retention as table=days pairs (e.g. "+defaultRetention+"); empty: keep everything")
	f.DurationVar(&o.RetentionInterval, "sink-retention-interval", time.Hour, "sink: how often to enforce --sink-retention")
}

// retentionValue parses --sink-retention as the flag is set, so a typo fails at start-up.
type retentionValue struct {
	r   *storage.Retention
	raw *string
}

func (v retentionValue) String() string {
	if v.raw == nil {
		return ""
	}
	return *v.raw
}

func (v retentionValue) Set(s string) error {
	r, err := storage.ParseRetention(s)
	if err != nil {
		return err
	}
	*v.r, *v.raw = r, s
	return nil
}

func (retentionValue) Type() string { return "table=days,..." }

// retention applies the retention policy once, as the admin user.
func (g *globals) retention(ctx context.Context, out io.Writer, r storage.Retention, dryRun bool) error {
	conn, err := storage.Open(ctx, g.clickhouseAdmin())
	if err != nil {
		return err
	}
	defer conn.Close()
	res, err := storage.ApplyRetention(ctx, conn, g.chDatabase, r, time.Now(), dryRun)
	for _, rr := range res {
		fmt.Fprintln(out, rr.Describe(dryRun))
	}
	return err
}

func retentionCmd(g *globals) *cobra.Command {
	var (
		keep   string
		dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "retention",
		Short: "Enforce ClickHouse retention: TTL on servers that have it, dropping whole day partitions older than the limit on 18.16",
		Long: `Applies a retention policy to the mcpwatch tables as the admin user.

On ClickHouse 20.3 and newer it sets each table's TTL once; the server then drops expired parts
by itself. On 18.16, which has no TTL, it drops every day partition whose whole day is older than
the limit (UTC), and has to run periodically: from cron or a systemd timer, or let the sink do it
with --sink-retention and --sink-retention-interval.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := storage.ParseRetention(keep)
			if err != nil {
				return err
			}
			return g.retention(cmd.Context(), cmd.OutOrStdout(), r, dryRun)
		},
	}
	cmd.Flags().StringVar(&keep, "keep", env("MCPWATCH_RETENTION", defaultRetention), "days to keep per table, table=days pairs ($MCPWATCH_RETENTION)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be dropped or set, change nothing")
	return cmd
}
