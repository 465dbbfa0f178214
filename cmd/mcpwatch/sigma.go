package main

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/detectors/sigma"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/forensics"
	"github.com/mcpwatch/mcpwatch/internal/table"
	sigmarules "github.com/mcpwatch/mcpwatch/rules/sigma"
	"github.com/mcpwatch/mcpwatch/storage"
)

func sigmaCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "sigma", Short: "Lint Sigma rules, or run them over events from a file or ClickHouse"}
	cmd.AddCommand(sigmaCheckCmd(), sigmaTestCmd(g))
	return cmd
}

// shippedRules names the embedded rule set in messages.
const shippedRules = "the shipped rules (rules/sigma)"

// loadRules loads rule files and directories, or the shipped set when paths is empty.
func loadRules(paths []string) (*sigma.RuleSet, []error, string) {
	if len(paths) == 0 {
		rs, errs := sigma.Load(sigmarules.FS, ".")
		return rs, sigma.Errors(errs), shippedRules
	}
	rs, errs := sigma.LoadPaths(paths...)
	return rs, sigma.Errors(errs), strings.Join(paths, ", ")
}

// lintRule returns what a rule lacks that analysts rely on when it fires: the engine loads it
// anyway, so these are warnings, at the rule's position.
func lintRule(r *sigma.Rule) []string {
	var out []string
	at := fmt.Sprintf("%s:%d:1: warning: ", r.File, r.Line)
	for _, c := range []struct {
		missing bool
		what    string
	}{
		{r.Level == "", "no level (treated as medium)"},
		{r.Status == "", "no status"},
		{r.Description == "", "no description"},
		{len(r.Tags) == 0, "no tags (MITRE ATT&CK attack.* or ATLAS atlas.*)"},
		{len(r.FalsePositives) == 0, "no falsepositives: say what else makes it fire"},
		{r.Author == "", "no author"},
		{r.Date == "", "no date"},
		{r.Logsource.Product == "", "logsource has no product (mcpwatch)"},
		{r.Status == "deprecated" || r.Status == "unsupported", "status " + r.Status + ": the rule still runs"},
	} {
		if c.missing {
			out = append(out, at+c.what)
		}
	}
	return out
}

func sigmaCheckCmd() *cobra.Command {
	var strict bool
	cmd := &cobra.Command{
		Use:   "check [PATH...]",
		Short: "Load and lint Sigma rules (default: the shipped set); errors as file:line:column, non-zero exit on any",
		Long: `Loads rule files (*.yml, *.yaml) and directories with mcpwatch's Sigma engine, as the detect
stage does, and prints every refused rule as file:line:column: reason, then lint warnings (a rule
without level, tags, description, falsepositives, ...) and a summary. It exits non-zero when a
rule is refused (or, with --strict, on warnings too). Without paths it checks the shipped rules.`,
		Example: `  mcpwatch sigma check
  mcpwatch sigma check /etc/mcpwatch/rules/ extra.yml --strict`,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			rs, errs, what := loadRules(args)
			for _, err := range errs {
				fmt.Fprintln(out, err)
			}
			var warnings []string
			files := map[string]bool{}
			for _, r := range rs.Rules() {
				files[r.File] = true
				warnings = append(warnings, lintRule(r)...)
			}
			for _, err := range errs {
				if se := (*sigma.Error)(nil); errors.As(err, &se) && se.File != "" {
					files[se.File] = true
				}
			}
			for _, w := range warnings {
				fmt.Fprintln(out, w)
			}
			for _, c := range rs.Correlations() {
				files[c.File] = true
			}
			fmt.Fprintf(out, "%s: %d rules and %d correlation rules loaded from %d files, %d errors, %d warnings\n",
				what, rs.Len(), len(rs.Correlations()), len(files), len(errs), len(warnings))
			switch {
			case len(errs) > 0:
				return fmt.Errorf("sigma check: %d rules or files refused", len(errs))
			case strict && len(warnings) > 0:
				return fmt.Errorf("sigma check: %d warnings (--strict)", len(warnings))
			case rs.Len() == 0:
				return fmt.Errorf("sigma check: no rule in %s", what)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&strict, "strict", false, "fail on warnings too")
	return cmd
}

// sigmaTestFlags are the flags of `sigma test`.
type sigmaTestFlags struct {
	rules             []string
	events            string
	fromCH            bool
	last              time.Duration
	since, until      string
	tenant, principal string
	limit             int
	format            string
	allowRefusedRules bool
}

func sigmaTestCmd(g *globals) *cobra.Command {
	var f sigmaTestFlags
	cmd := &cobra.Command{
		Use:   "test (--events FILE | --from-clickhouse) [--rules PATH...]",
		Short: "Run Sigma rules over events from a JSON-lines file or from ClickHouse and show what matches",
		Long: `Runs Sigma rules (--rules, files or directories; default the shipped set) over mcpwatch events
and prints each match: event time, principal, method and tool, rule id, title and level, and the
event's values that matched. A summary goes to standard error.

Events come from one of:
  --events FILE        JSON lines, one mcpwatch event each ("-" for standard input), e.g. an
                       export of the events topic or of the events table's raw column
  --from-clickhouse    the events table, as the read-only ClickHouse user: the MCP events of
                       --last (default 1h) or --since/--until, optionally of one --tenant and
                       --principal, at most --limit, oldest first

A refused rule is an error (fix it with 'mcpwatch sigma check'), unless --allow-refused.`,
		Example: `  mcpwatch sigma test --events events.jsonl
  mcpwatch sigma test --rules my-rules/ --from-clickhouse --since 1h --principal mallory
  mcpwatch sigma test --from-clickhouse --since 2026-12-01 --until 2026-12-02 --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (f.events == "") == !f.fromCH {
				return errors.New("sigma test needs one source: --events FILE or --from-clickhouse")
			}
			format, err := table.ParseFormat(f.format)
			if err != nil {
				return err
			}
			if f.events != "" && (f.last != 0 || f.since != "" || f.until != "" || f.tenant != "" || f.principal != "") {
				return errors.New("--last, --since, --until, --tenant and --principal select events in ClickHouse; with --events, filter the file")
			}
			rs, errs, what := loadRules(f.rules)
			for _, err := range errs {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
			}
			if len(errs) > 0 && !f.allowRefusedRules {
				return fmt.Errorf("%d rules or files refused in %s (see above; --allow-refused runs the others)", len(errs), what)
			}
			if rs.Len() == 0 {
				return fmt.Errorf("no rule in %s", what)
			}
			st := &sigmaRun{rs: rs}
			if st.corr, err = rs.NewCorrelator(sigma.DefaultLimits); err != nil {
				return err
			}
			if f.events != "" {
				err = st.readFile(cmd.InOrStdin(), f.events)
			} else {
				err = g.sigmaFromClickHouse(cmd.Context(), f, st.add)
			}
			if err != nil {
				return err
			}
			if err := table.Write(cmd.OutOrStdout(), format, sigmaColumns, st.rows(format == table.Text)); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%d events, %d MCP events, %d matched; %d matches of %d of %d rules (%s)\n",
				st.events, st.mcp, st.matched, len(st.matches), st.rulesHit(), rs.Len(), what)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.rules, "rules", nil, "rule files or directories, comma-separated or repeated (default: the shipped rules)")
	fl.StringVar(&f.events, "events", "", "JSON-lines file of mcpwatch events, - for standard input")
	fl.BoolVar(&f.fromCH, "from-clickhouse", false, "read events from ClickHouse as the read-only user (--clickhouse, --clickhouse-ro-user)")
	fl.DurationVar(&f.last, "last", 0, "--from-clickhouse: events of this long back from now (default 1h)")
	fl.StringVar(&f.since, "since", "", "--from-clickhouse: window start: a duration back from now (1h) or a time (RFC 3339, '2006-01-02 15:04:05' or '2006-01-02', UTC)")
	fl.StringVar(&f.until, "until", "", "--from-clickhouse: window end, exclusive (default now)")
	fl.StringVar(&f.tenant, "tenant", "", "--from-clickhouse: only this tenant's events")
	fl.StringVar(&f.principal, "principal", "", "--from-clickhouse: only this principal's events (subject, else OAuth client id)")
	fl.IntVar(&f.limit, "limit", 100000, "--from-clickhouse: most events read")
	fl.StringVar(&f.format, "format", "table", "output: table, csv or json")
	fl.BoolVar(&f.allowRefusedRules, "allow-refused", false, "run the rules that load even when others are refused")
	return cmd
}

var sigmaColumns = []string{"time", "principal", "method", "tool", "rule_id", "title", "level", "fields"}

// sigmaMatch is a detection rule's match of event e, or a correlation rule's match completed
// by e (its fields are then the group and the count).
type sigmaMatch struct {
	e *event.Event
	m sigma.Match
}

// sigmaRun matches events as they are read, in the order read (correlations count matches
// out of order within their timespan), and keeps the matches.
type sigmaRun struct {
	rs                   *sigma.RuleSet
	corr                 *sigma.Correlator
	events, mcp, matched int
	matches              []sigmaMatch
	cms                  []sigma.CorrelationMatch
}

func (s *sigmaRun) add(e *event.Event) error {
	s.events++
	if e.Source != event.SourceMCP || e.MCP == nil {
		return nil
	}
	s.mcp++
	ms := s.rs.Match(e)
	if len(ms) > 0 {
		s.matched++
	}
	for _, m := range ms {
		s.matches = append(s.matches, sigmaMatch{e, m})
	}
	if s.corr != nil {
		s.cms = s.corr.Observe(e, ms, s.cms[:0])
		for _, cm := range s.cms {
			c := cm.Correlation
			fields := append([]sigma.FieldMatch{{Field: string(c.Type), Value: fmt.Sprintf("%d in %s (%s)", cm.Count,
				cm.WindowEnd.Sub(cm.WindowStart), c.Condition)}}, cm.GroupBy...)
			s.matches = append(s.matches, sigmaMatch{e, sigma.Match{RuleID: c.ID, Title: c.Title, Level: c.Level, Tags: c.Tags, Fields: fields}})
		}
	}
	return nil
}

func (s *sigmaRun) rulesHit() int {
	ids := map[string]bool{}
	for _, m := range s.matches {
		ids[m.m.RuleID] = true
	}
	return len(ids)
}

// maxCell bounds a matched value in a table: masked arguments can run to kilobytes.
const maxCell = 120

func (s *sigmaRun) rows(clip bool) [][]string {
	out := make([][]string, 0, len(s.matches))
	for _, sm := range s.matches {
		e, m := sm.e, sm.m
		fields := make([]string, len(m.Fields))
		for i, fm := range m.Fields {
			v := fm.Value
			if clip && len(v) > maxCell {
				v = strings.ToValidUTF8(v[:maxCell], "") + "…"
			}
			fields[i] = fm.Field + "=" + v
		}
		out = append(out, []string{e.Time.UTC().Format(time.RFC3339Nano), event.PrincipalID(e.Principal), e.MCP.Method, e.MCP.Tool,
			m.RuleID, m.Title, m.Level, strings.Join(fields, "; ")})
	}
	return out
}

// maxEventLine bounds one line of an events file; gateway events are a few kilobytes.
const maxEventLine = 16 << 20

// readFile reads JSON lines of events from name ("-": stdin) and matches each.
func (s *sigmaRun) readFile(stdin io.Reader, name string) error {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventLine)
	for line := 1; sc.Scan(); line++ {
		b := sc.Bytes()
		if len(strings.TrimSpace(string(b))) == 0 {
			continue
		}
		var e event.Event
		if err := event.Decode(b, &e); err != nil {
			return fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if err := s.add(&e); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// sigmaWindow is the ClickHouse window of `sigma test`: --since may be a duration back from now,
// as --last is; the default is the last hour.
func sigmaWindow(f sigmaTestFlags, now time.Time) (forensics.Window, error) {
	last, since := f.last, f.since
	if d, err := time.ParseDuration(since); err == nil && since != "" {
		if last != 0 {
			return forensics.Window{}, errors.New("--since as a duration and --last say the same thing: give one")
		}
		last, since = d, ""
	}
	if last == 0 && since == "" && f.until == "" {
		last = time.Hour
	}
	return forensics.ParseWindow(last, since, f.until, now)
}

func (g *globals) sigmaFromClickHouse(ctx context.Context, f sigmaTestFlags, each func(*event.Event) error) error {
	w, err := sigmaWindow(f, time.Now())
	if err != nil {
		return err
	}
	if f.limit <= 0 {
		return errors.New("--limit must be positive")
	}
	conn, err := storage.Open(ctx, g.clickhouseRO())
	if err != nil {
		return err
	}
	defer conn.Close()
	return forensics.StoredEvents(ctx, conn, g.chDatabase, w, f.tenant, f.principal, f.limit, each)
}
