package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/forensics"
	"github.com/mcpwatch/mcpwatch/internal/table"
	"github.com/mcpwatch/mcpwatch/privacy"
	"github.com/mcpwatch/mcpwatch/storage"
)

// queryParams is query with {name:Type} parameters bound by the driver.
func (g *globals) queryParams(ctx context.Context, out io.Writer, sql, format string, params map[string]string) error {
	sql, args, err := forensics.BindParams(sql, params)
	if err != nil {
		return err
	}
	f, err := table.ParseFormat(format)
	if err != nil {
		return err
	}
	conn, err := storage.Open(ctx, g.clickhouseRO())
	if err != nil {
		return err
	}
	defer conn.Close()
	cols, rows, err := storage.QueryTable(ctx, conn, sql, args...)
	if err != nil {
		return err
	}
	return table.Write(out, f, cols, rows)
}

// dpFlags are the flags of `query --dp`.
type dpFlags struct {
	on                    bool
	aggregate, column     string
	lower, upper, epsilon float64
	tenant, analyst       string
	last                  time.Duration
	since, until          string
	budget                float64
	period                time.Duration
	remaining             bool
}

// dpQuery answers one differentially private aggregate: the analytic query as the read-only
// user, the budget ledger as the writer.
func (g *globals) dpQuery(ctx context.Context, out io.Writer, filter, format string, f dpFlags) error {
	tf, err := table.ParseFormat(format)
	if err != nil {
		return err
	}
	req := privacy.Request{Analyst: f.analyst, Aggregate: privacy.Aggregate(f.aggregate), Column: f.column,
		Lower: f.lower, Upper: f.upper, Filter: filter, Tenant: f.tenant, Epsilon: f.epsilon}
	if f.last != 0 || f.since != "" || f.until != "" {
		w, err := forensics.ParseWindow(f.last, f.since, f.until, time.Now())
		if err != nil {
			return err
		}
		req.Since, req.Until = w.Since, w.Until
	}
	if _, err := privacy.ParseFilter(filter); err != nil {
		return err // before connecting: a bad filter needs no database to be refused
	}
	ro, err := storage.Open(ctx, g.clickhouseRO())
	if err != nil {
		return err
	}
	defer ro.Close()
	w, err := storage.Open(ctx, g.clickhouse())
	if err != nil {
		return fmt.Errorf("privacy budget ledger (writer credentials): %w", err)
	}
	defer w.Close()
	eng, err := privacy.New(ro, w, privacy.Config{Database: g.chDatabase, Budget: f.budget, Period: f.period})
	if err != nil {
		return err
	}
	if f.remaining {
		left, err := eng.Remaining(ctx, f.analyst)
		if err != nil {
			return err
		}
		return table.Write(out, tf, []string{"analyst", "remaining_epsilon", "budget", "period"},
			[][]string{{f.analyst, fmt.Sprint(left), fmt.Sprint(f.budget), f.period.String()}})
	}
	a, err := eng.Query(ctx, req)
	if err != nil {
		return err
	}
	return a.Write(out, tf)
}

func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

func queryCmd(g *globals) *cobra.Command {
	var (
		format string
		params []string
		dp     dpFlags
	)
	cmd := &cobra.Command{
		Use:   "query SQL | query --dp --aggregate count|sum|mean [FILTER]",
		Short: "Run forensic SQL as the read-only ClickHouse user, or a differentially private aggregate (--dp)",
		Long: `Without --dp, runs SQL as the read-only ClickHouse user (the server refuses writes) and prints
a table, CSV or JSON. {name:Type} placeholders (String, DateTime, IntN, UIntN, FloatN) take their
values from --param name=value and are bound by the driver; docs/forensics.md has a cookbook.

With --dp, answers count, sum or mean over the events table with Laplace noise at ε (default
0.5), refuses pools under 10,000 records, and charges ε to the analyst's budget in the ClickHouse
ledger. FILTER is a condition on event columns, e.g. "tool = 'db_query' AND result = 'denied'";
see docs/privacy.md.`,
		Example: `  mcpwatch query "SELECT tool, count() FROM events FINAL GROUP BY tool"
  mcpwatch query --param tenant=acme --param since='2026-11-20 00:00:00' --param until=2026-11-21 "$(cat q.sql)"
  mcpwatch query --dp --aggregate count "tool = 'db_query' AND has(pii_kinds, 'email')" --last 720h
  mcpwatch query --dp --aggregate mean --column latency_ms --lower 0 --upper 5000 --tenant acme`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			arg := ""
			if len(args) == 1 {
				arg = args[0]
			}
			if dp.on || dp.remaining {
				if len(params) > 0 {
					return errors.New("--param applies to SQL queries, not --dp")
				}
				return g.dpQuery(cmd.Context(), cmd.OutOrStdout(), arg, format, dp)
			}
			if arg == "" {
				return errors.New("query needs SQL (or --dp)")
			}
			p := map[string]string{}
			for _, kv := range params {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("--param %q: want name=value", kv)
				}
				p[k] = v
			}
			return g.queryParams(cmd.Context(), cmd.OutOrStdout(), arg, format, p)
		},
	}
	f := cmd.Flags()
	f.StringVar(&format, "format", "table", "output: table, csv or json")
	f.StringArrayVar(&params, "param", nil, "value of a {name:Type} placeholder, as name=value (repeatable)")
	f.BoolVar(&dp.on, "dp", false, "answer a differentially private aggregate over events instead of running SQL")
	f.StringVar(&dp.aggregate, "aggregate", "count", "--dp: count, sum or mean")
	f.StringVar(&dp.column, "column", "", "--dp sum/mean: request_bytes, response_bytes, latency_ms, severity, sensitivity, span_duration_ms or pii_count")
	f.Float64Var(&dp.lower, "lower", 0, "--dp sum/mean: lower clamping bound of the column")
	f.Float64Var(&dp.upper, "upper", 0, "--dp sum/mean: upper clamping bound of the column")
	f.Float64Var(&dp.epsilon, "epsilon", privacy.DefaultEpsilon, "--dp: ε this answer spends")
	f.StringVar(&dp.tenant, "tenant", "", "--dp: only this tenant's events")
	f.DurationVar(&dp.last, "last", 0, "--dp: only events of this long back from now (e.g. 720h)")
	f.StringVar(&dp.since, "since", "", "--dp: only events at or after this time (UTC)")
	f.StringVar(&dp.until, "until", "", "--dp: only events before this time (UTC)")
	f.StringVar(&dp.analyst, "analyst", env("MCPWATCH_ANALYST", currentUser()), "--dp: whose budget pays ($MCPWATCH_ANALYST, else the OS user)")
	f.Float64Var(&dp.budget, "dp-budget", envFloat("MCPWATCH_DP_BUDGET", privacy.DefaultBudget), "--dp: ε per analyst per period ($MCPWATCH_DP_BUDGET)")
	f.DurationVar(&dp.period, "dp-period", envDuration("MCPWATCH_DP_PERIOD", privacy.DefaultPeriod), "--dp: rolling budget period ($MCPWATCH_DP_PERIOD)")
	f.BoolVar(&dp.remaining, "dp-remaining", false, "show the analyst's remaining ε instead of querying")
	return cmd
}

func envFloat(k string, def float64) float64 {
	var v float64
	if _, err := fmt.Sscan(os.Getenv(k), &v); err == nil {
		return v
	}
	return def
}

func envDuration(k string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(k)); err == nil {
		return d
	}
	return def
}
