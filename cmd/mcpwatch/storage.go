package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
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

// query runs sql as the read-only user and prints the result.
func (g *globals) query(ctx context.Context, out io.Writer, sql, format string) error {
	conn, err := storage.Open(ctx, g.clickhouseRO())
	if err != nil {
		return err
	}
	defer conn.Close()
	cols, rows, err := storage.QueryTable(ctx, conn, sql)
	if err != nil {
		return err
	}
	return printTable(out, format, cols, rows)
}

func printTable(out io.Writer, format string, cols []string, rows [][]string) error {
	switch format {
	case "csv":
		w := csv.NewWriter(out)
		_ = w.Write(cols)
		_ = w.WriteAll(rows)
		return w.Error()
	case "json":
		enc := json.NewEncoder(out)
		for _, r := range rows {
			m := make(map[string]string, len(cols))
			for i, c := range cols {
				m[c] = r[i]
			}
			if err := enc.Encode(m); err != nil {
				return err
			}
		}
		return nil
	case "table", "":
		w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, strings.Join(cols, "\t"))
		for _, r := range rows {
			fmt.Fprintln(w, strings.Join(r, "\t"))
		}
		fmt.Fprintf(w, "(%d rows)\n", len(rows))
		return w.Flush()
	}
	return fmt.Errorf("unknown format %q: want table, csv or json", format)
}

func queryCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "query SQL",
		Short: "Run forensic SQL as the read-only ClickHouse user (writes are refused by the server)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.query(cmd.Context(), cmd.OutOrStdout(), args[0], format)
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output: table, csv or json")
	return cmd
}
