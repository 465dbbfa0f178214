package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/storage"
)

// migrateOptions are the migrate command's flags.
type migrateOptions struct {
	roUser   string // create this read-only user on servers with SQL access control
	printFor string // print the DDL a server of this version would get, connect to nothing
}

// migrate creates the database and applies pending migrations as the admin user.
func (g *globals) migrate(ctx context.Context, out io.Writer) error {
	return g.migrateWith(ctx, out, migrateOptions{})
}

func (g *globals) migrateWith(ctx context.Context, out io.Writer, o migrateOptions) error {
	if o.printFor != "" {
		v, err := storage.ParseVersion(o.printFor)
		if err != nil {
			return err
		}
		return storage.WriteSchema(out, g.chDatabase, v)
	}
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
	ver, err := storage.ServerVersion(ctx, conn)
	if err != nil {
		return err
	}
	applied, err := storage.Migrate(ctx, conn, g.chDatabase)
	if err != nil {
		return err
	}
	for _, m := range applied {
		fmt.Fprintf(out, "applied migration %04d %s (ClickHouse %s, features: %s)\n", m.Version, m.Name, ver, storage.FeaturesFor(ver))
	}
	if len(applied) == 0 {
		fmt.Fprintf(out, "schema of %s is up to date\n", g.chDatabase)
	}
	if o.roUser == "" {
		return nil
	}
	err = storage.EnsureReader(ctx, conn, g.chDatabase, o.roUser, os.Getenv("MCPWATCH_CLICKHOUSE_RO_PASSWORD"))
	switch {
	case errors.Is(err, storage.ErrNoAccessControl):
		fmt.Fprintf(out, "read-only user %s: ClickHouse %s has no SQL access control; configure it in users.xml with readonly=2 (deploy/local/stack.sh does)\n", o.roUser, ver)
		return nil
	case err != nil:
		return err
	}
	fmt.Fprintf(out, "read-only user %s: readonly=2, role %s (SELECT on %s.*)\n", o.roUser, storage.ReaderRole(g.chDatabase), g.chDatabase)
	return nil
}

func migrateCmd(g *globals) *cobra.Command {
	var o migrateOptions
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create the ClickHouse database and apply pending schema migrations (admin user from $MCPWATCH_CLICKHOUSE_ADMIN_*)",
		Long: `Creates the database and applies the pending schema migrations as the admin user. Each
migration is rendered for the server's version: ClickHouse 18.16 gets plain types, 20.3 and newer
DateTime64, LowCardinality, codecs and skip indexes, 20.5 and newer a read-only role.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.migrateWith(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	cmd.Flags().StringVar(&o.roUser, "ro-user", "", "also create or update this read-only user (password from $MCPWATCH_CLICKHOUSE_RO_PASSWORD) on servers with SQL access control (20.5+)")
	cmd.Flags().StringVar(&o.printFor, "print", "", "print the DDL a server of this version (major.minor.patch, e.g. 24.8.1) would get, and change nothing")
	return cmd
}
