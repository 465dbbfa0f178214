package main

import (
	"context"
	"fmt"
	"io"
	"strings"
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
		switch {
		case rr.TTL && dryRun:
			fmt.Fprintf(out, "%s: would set TTL %d days\n", rr.Table, rr.Days)
		case rr.TTL:
			fmt.Fprintf(out, "%s: TTL %d days (the server drops expired parts itself)\n", rr.Table, rr.Days)
		case len(rr.Dropped) == 0:
			fmt.Fprintf(out, "%s: nothing older than %d days\n", rr.Table, rr.Days)
		case dryRun:
			fmt.Fprintf(out, "%s: would drop %d day partitions older than %d days: %s\n", rr.Table, len(rr.Dropped), rr.Days, strings.Join(rr.Dropped, " "))
		default:
			fmt.Fprintf(out, "%s: dropped %d day partitions older than %d days: %s\n", rr.Table, len(rr.Dropped), rr.Days, strings.Join(rr.Dropped, " "))
		}
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
