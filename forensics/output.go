package forensics

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/mcpwatch/mcpwatch/internal/table"
)

// Write prints the timeline as "table" (a summary header, then one line per entry), "csv" (the
// entries with a header row) or "json" (one object with query, summary and entries); the format
// names are those of [table.ParseFormat].
func (t *Timeline) Write(w io.Writer, format string) error {
	f, err := table.ParseFormat(format)
	if err != nil {
		return err
	}
	switch f {
	case table.CSV:
		rows := make([][]string, len(t.Entries))
		for i, e := range t.Entries {
			rows[i] = e.row()
		}
		return table.WriteCSV(w, csvHeader, rows)
	case table.JSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Subject Subject `json:"subject"`
			Value   string  `json:"value"`
			Tenant  string  `json:"tenant,omitempty"`
			Since   string  `json:"since"`
			Until   string  `json:"until"`
			*Timeline
		}{t.Query.Subject, t.Query.Value, t.Query.Tenant, stamp(t.Query.Window.Since), stamp(t.Query.Window.Until), t})
	}
	return t.writeTable(w)
}

var csvHeader = []string{"time", "kind", "tenant", "principal", "signature", "name", "what", "outcome", "score", "detail", "src_ip", "session", "sandbox", "id"}

func (e Entry) row() []string {
	score := ""
	if e.Score != nil {
		score = strconv.FormatFloat(*e.Score, 'f', 1, 64)
	}
	return []string{e.Time.Format("2006-01-02 15:04:05.000"), e.Kind, e.Tenant, e.Principal, e.Signature, e.Name,
		e.What, e.Outcome, score, e.Detail, e.SrcIP, e.Session, e.Sandbox, e.ID}
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.DateTime)
}

func list(l []string) string {
	if len(l) == 0 {
		return "-"
	}
	if len(l) > 10 {
		return strings.Join(l[:10], ", ") + fmt.Sprintf(" (+%d more)", len(l)-10)
	}
	return strings.Join(l, ", ")
}

func (t *Timeline) writeTable(w io.Writer) error {
	q, s := t.Query, t.Summary
	tenant := q.Tenant
	if tenant == "" {
		tenant = "all tenants"
	}
	fmt.Fprintf(w, "Investigation: %s %q, %s, %s .. %s UTC\n", q.Subject, q.Value, tenant, stamp(q.Window.Since), stamp(q.Window.Until))
	fmt.Fprintf(w, "  events %d (denied %d, errors %d, kernel %d), findings %d (highest score %.1f), actions %d\n",
		s.Events, s.Denials, s.Errors, s.KernelEvents, s.Findings, s.HighestScore, s.Actions)
	fmt.Fprintf(w, "  first seen %s, last seen %s, sessions %d\n", stamp(s.FirstSeen), stamp(s.LastSeen), s.Sessions)
	fmt.Fprintf(w, "  principals: %s\n  tools: %s\n  source IPs: %s\n\n", list(s.Principals), list(s.Tools), list(s.SrcIPs))
	if t.Behaviour != nil {
		if err := t.Behaviour.write(w); err != nil {
			return err
		}
	}
	rows := make([][]string, len(t.Entries))
	for i, e := range t.Entries {
		r := e.row()
		rows[i] = []string{r[0], e.Kind, dash(e.Principal), dash(e.Signature), dash(short(e.What, 60)),
			dash(e.Outcome), dash(r[8]), short(e.Detail, 100)}
	}
	if err := table.WriteAligned(w, []string{"TIME", "KIND", "PRINCIPAL", "SIGNATURE", "WHAT", "OUTCOME", "SCORE", "DETAIL"}, rows); err != nil {
		return err
	}
	more := ""
	if t.Truncated {
		more = fmt.Sprintf(" (truncated at %d per kind; narrow the window or raise --limit)", q.Limit)
	}
	_, err := fmt.Fprintf(w, "(%d entries%s)\n", len(t.Entries), more)
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return strings.ReplaceAll(s, "\t", " ")
}

func counts(cs []Count) string {
	if len(cs) == 0 {
		return "-"
	}
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Value + " " + roundCount(c.Count)
	}
	return strings.Join(out, ", ")
}

// write prints "normal" (each profile), "now" (the last hour) and the latest score with its
// evidence, before the timeline.
func (b *Behaviour) write(w io.Writer) error {
	if len(b.Normal) == 0 {
		fmt.Fprintf(w, "Normal: no behaviour profile stored for this principal\n")
	}
	for _, n := range b.Normal {
		peers := ""
		if n.PeerGroup != "" {
			peers = ", peer group " + n.PeerGroup
		}
		fmt.Fprintf(w, "Normal (%s profile v%d, updated %s, since %s, %d observations, confidence %.2f%s):\n",
			n.Detector, n.Version, stamp(n.Updated), stamp(n.FirstSeen), n.Observations, n.Confidence, peers)
		fmt.Fprintf(w, "  tools: %s\n  clients: %s\n  networks: %s\n", counts(n.Tools), counts(n.Clients), counts(n.Networks))
		for _, f := range n.Features {
			fmt.Fprintf(w, "  %s: mean %.4g ± %.4g, p50 %.4g, p95 %.4g\n", f.Name, f.Mean, f.Stddev, f.P50, f.P95)
		}
		if hours := activeHours(n.HourCounts); hours != "" {
			fmt.Fprintf(w, "  active hours (UTC): %s\n", hours)
		}
	}
	if n := b.Now; n != nil {
		fmt.Fprintf(w, "Now (the hour to %s): %d calls\n  tools: %s\n  clients: %s\n  source IPs: %s\n",
			stamp(n.Until), n.Calls, counts(n.Tools), counts(n.Clients), counts(n.SrcIPs))
	}
	sc := b.Score
	if sc == nil {
		_, err := fmt.Fprintln(w)
		return err
	}
	fmt.Fprintf(w, "Latest score %.1f at %s", sc.Score, stamp(sc.Time))
	if sc.Explanation != "" {
		fmt.Fprintf(w, ": %s", sc.Explanation)
	}
	fmt.Fprintln(w)
	if len(sc.Evidence) > 0 {
		rows := make([][]string, len(sc.Evidence))
		for i, e := range sc.Evidence {
			peers := "-"
			if e.PeerPercentile != nil {
				peers = strconv.FormatFloat(*e.PeerPercentile, 'f', 0, 64)
			}
			rows[i] = []string{dash(e.Detector), dash(e.Check), dash(e.Feature), strconv.FormatFloat(e.Observed, 'g', 4, 64),
				strconv.FormatFloat(e.Baseline, 'g', 4, 64), dash(e.BaselineSource), peers,
				strconv.FormatFloat(e.Value, 'f', 1, 64), strconv.FormatFloat(e.Contribution, 'f', 1, 64), short(e.Detail, 80)}
		}
		if err := table.WriteAligned(w, []string{"  DETECTOR", "CHECK", "FEATURE", "OBSERVED", "BASELINE", "OF", "PEER %", "VALUE", "POINTS", "DETAIL"}, indent(rows)); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintln(w)
	return err
}

func indent(rows [][]string) [][]string {
	for _, r := range rows {
		r[0] = "  " + r[0]
	}
	return rows
}

// activeHours lists the hours of day that hold at least 5% of the profiled calls.
func activeHours(h []uint64) string {
	var total uint64
	for _, v := range h {
		total += v
	}
	var out []string
	for hour, v := range h {
		if total > 0 && v*20 >= total {
			out = append(out, fmt.Sprintf("%02d (%d)", hour, v))
		}
	}
	return strings.Join(out, ", ")
}
