package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/storage"
)

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
