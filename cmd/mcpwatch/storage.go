package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/storage"
)

// migrate creates the database and applies pending migrations as the admin user.
func (g *globals) migrate(ctx context.Context, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	opts := g.clickhouseAdmin()
	opts.Database = ""
	conn, err := storage.Open(ctx, opts)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := storage.CreateDatabase(ctx, conn, g.chDatabase); err != nil {
		return err
	}
	applied, err := storage.Migrate(ctx, conn, g.chDatabase)
	if err != nil {
		return err
	}
	for _, m := range applied {
		fmt.Fprintf(out, "applied migration %04d %s\n", m.Version, m.Name)
	}
	if len(applied) == 0 {
		fmt.Fprintf(out, "schema of %s is up to date\n", g.chDatabase)
	}
	return nil
}

func migrateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Create the ClickHouse database and apply pending schema migrations (admin user from $MCPWATCH_CLICKHOUSE_ADMIN_*)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.migrate(cmd.Context(), cmd.OutOrStdout())
		},
	}
}
