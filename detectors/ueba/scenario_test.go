package ueba

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/event"
)

// t0 is a Monday, 09:00 UTC.
var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

type world struct {
	t     testing.TB
	d     *Detector
	seq   int
	all   []detect.Signal
	finds []*event.Finding
}

func newWorld(t testing.TB, mod func(*Config)) *world {
	cfg := DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &world{t: t, d: d}
}

type who struct {
	sub, group, client, ip, ua, token string
}

func analyst(i int) who {
	return who{sub: fmt.Sprintf("analyst%02d", i), group: "finance-analysts", client: "claude-desktop",
		ip: fmt.Sprintf("10.0.%d.%d", i, 10+i), ua: "claude-desktop/1.4", token: fmt.Sprintf("jti-%d", i)}
}

func (w *world) ev(p who, at time.Time, tool string, mod ...func(*event.Event)) *event.Event {
	w.seq++
	e := &event.Event{ID: fmt.Sprintf("ev-%07d", w.seq), Time: at, Source: event.SourceMCP, Tenant: "acme",
		Principal: event.Principal{Subject: p.sub, ClientID: p.client, PeerGroup: p.group, TokenID: p.token},
		MCP: &event.MCP{Direction: event.DirRequest, Method: "tools/call", Tool: tool, ClientName: p.client,
			ClientVersion: "1.4", ProtocolVersion: "2025-06-18"},
		Target:     event.Target{Server: "acme-data"},
		Network:    event.Network{SrcIP: p.ip, UserAgent: p.ua},
		Outcome:    event.Outcome{Result: event.ResultAllowed},
		Size:       event.Size{Request: 200},
		Normalized: &event.Normalized{Sensitivity: 0.1},
	}
	for _, m := range mod {
		m(e)
	}
	return e
}

func (w *world) feed(es ...*event.Event) (sigs []detect.Signal, finds []*event.Finding) {
	for _, e := range es {
		var out detect.Output
		w.d.Observe(e, &out)
		for i := range out.Signals { // worded, so that signals compare by their sentences
			ev := &out.Signals[i].Evidence
			ev.Detail, ev.Words = ev.Text(), detect.Words{}
		}
		sigs = append(sigs, out.Signals...)
		finds = append(finds, out.Findings...)
	}
	w.all = append(w.all, sigs...)
	w.finds = append(w.finds, finds...)
	return sigs, finds
}

func session(id string) func(*event.Event) {
	return func(e *event.Event) { e.Correlation.SessionID = id }
}

func sensitive(v float64, classes ...string) func(*event.Event) {
	return func(e *event.Event) { e.Normalized.Sensitivity, e.DataClasses = v, classes }
}

// normalTraffic is every principal's ordinary day from start for dur: a call roughly every
// minute from a few usual tools, an occasional sensitive report read, responses of a few KB.
func (w *world) normalTraffic(ps []who, start time.Time, dur time.Duration, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	type item struct {
		e []*event.Event
		t time.Time
	}
	var items []item
	tools := []string{"db_query", "list_reports", "file_read", "search"}
	for _, p := range ps {
		for at := start.Add(time.Duration(rng.IntN(60)) * time.Second); at.Before(start.Add(dur)); at = at.Add(time.Duration(40+rng.IntN(40)) * time.Second) {
			tool := tools[rng.IntN(len(tools))]
			var mods []func(*event.Event)
			if rng.IntN(30) == 0 {
				mods = append(mods, sensitive(0.7, "finance"))
			}
			req := w.ev(p, at, tool, mods...)
			resp := w.ev(p, at.Add(200*time.Millisecond), tool, func(e *event.Event) {
				e.MCP.Direction, e.Size = event.DirResponse, event.Size{Response: 2000 + rng.IntN(3000)}
			})
			items = append(items, item{[]*event.Event{req, resp}, at})
		}
	}
	slices.SortStableFunc(items, func(a, b item) int { return a.t.Compare(b.t) })
	for _, it := range items {
		w.feed(it.e...)
	}
}

func team(n int) []who {
	var ps []who
	for i := range n {
		ps = append(ps, analyst(i))
	}
	return ps
}

func findingsOf(fs []*event.Finding, check string) []*event.Finding {
	var out []*event.Finding
	for _, f := range fs {
		if f.Check == check {
			out = append(out, f)
		}
	}
	return out
}

func dump(fs []*event.Finding) string {
	s := ""
	for _, f := range fs {
		s += fmt.Sprintf("\n  %s %s %.1f %s", f.Time.Format(time.TimeOnly), f.Check, f.Score, f.Summary)
	}
	return s
}

// A team with a few hours of ordinary work yields no finding at all: not while the profiles are
// young (a new principal is not anomalous for being new), nor once they are trusted.
func TestNormalTeamNoFindings(t *testing.T) {
	w := newWorld(t, nil)
	w.normalTraffic(team(10), t0, 4*time.Hour, 1)
	if len(w.finds) != 0 {
		t.Fatalf("%d findings on normal traffic:%s", len(w.finds), dump(w.finds))
	}
	if w.d.Stats().Principals != 10 {
		t.Fatalf("principals %d", w.d.Stats().Principals)
	}
}

// trained is a team of ten with three hours of ordinary history.
func trained(t *testing.T) (*world, []who) {
	w := newWorld(t, nil)
	ps := team(10)
	w.normalTraffic(ps, t0, 3*time.Hour, 7)
	if len(w.finds) != 0 {
		t.Fatalf("findings while training:%s", dump(w.finds))
	}
	return w, ps
}

func wantFinding(t *testing.T, fs []*event.Finding, check, feature, source string) *event.Finding {
	t.Helper()
	got := findingsOf(fs, check)
	if len(got) == 0 {
		t.Fatalf("no %s finding; got:%s", check, dump(fs))
	}
	f := got[0]
	ev := f.Evidence[0]
	if (feature != "" && ev.Feature != feature) || (source != "" && ev.BaselineSource != source) {
		t.Fatalf("%s evidence feature %q source %q, want %q %q: %+v", check, ev.Feature, ev.BaselineSource, feature, source, ev)
	}
	if f.Detector != Name || f.Score < 60 || f.ID == "" || len(f.EventIDs) == 0 || ev.Detail == "" || len(f.Tags) == 0 {
		t.Fatalf("incomplete finding %+v", f)
	}
	return f
}

// A scraper at 5 calls/s whose normal is ~1/min is caught within seconds, against its own
// baseline.
func TestScraper(t *testing.T) {
	w, ps := trained(t)
	start := t0.Add(3*time.Hour + 30*time.Second)
	var fs []*event.Finding
	for i := range 100 {
		_, f := w.feed(w.ev(ps[0], start.Add(time.Duration(i)*200*time.Millisecond), "db_query"))
		fs = append(fs, f...)
	}
	f := wantFinding(t, fs, "rate", "calls_per_window", "self")
	if f.Time.Sub(start) > 5*time.Second {
		t.Fatalf("rate finding after %s", f.Time.Sub(start))
	}
	if b := f.Evidence[0].Baseline; b < 0.5 || b > 3 {
		t.Fatalf("baseline %v calls/min, want ~1", b)
	}
	if len(findingsOf(fs, "rate")) != 1 {
		t.Fatalf("cooldown: %s", dump(fs))
	}
	// Silence: Expire brings the rate back to 0.
	var out detect.Output
	w.d.Expire(start.Add(time.Hour), &out)
	zero := false
	for _, s := range out.Signals {
		if s.Check == "rate" && s.Value == 0 && s.Subject == ps[0].sub {
			zero = true
		}
	}
	if !zero {
		t.Fatalf("no rate signal back to 0: %+v", out.Signals)
	}
}

// An analyst calling a payments tool none of its peers use.
func TestPeerRareTool(t *testing.T) {
	w, ps := trained(t)
	_, fs := w.feed(w.ev(ps[3], t0.Add(3*time.Hour+time.Minute), "payments_transfer"))
	f := wantFinding(t, fs, "new_value", "tool", "self")
	if f.Evidence[0].Observed != 0 || f.Evidence[0].Baseline != 9 || f.Evidence[0].PeerPercentile == nil {
		t.Fatalf("evidence %+v", f.Evidence[0])
	}
	// A tool its peers all use is not news, even first used by this one.
	w.feed(w.ev(ps[1], t0.Add(3*time.Hour+2*time.Minute), "shared_tool"))
	w2, ps2 := w, ps
	for i := 2; i < 10; i++ {
		w2.feed(w2.ev(ps2[i], t0.Add(3*time.Hour+3*time.Minute), "shared_tool"))
	}
	_, fs = w2.feed(w2.ev(ps2[0], t0.Add(3*time.Hour+4*time.Minute), "shared_tool"))
	if len(findingsOf(fs, "new_value")) != 0 {
		t.Fatalf("peer-common tool flagged:%s", dump(fs))
	}
}

// A stolen token used from a second client and network at normal rates.
func TestStolenToken(t *testing.T) {
	w, ps := trained(t)
	thief := ps[2]
	thief.client, thief.ip, thief.ua = "python-mcp", "203.0.113.50", "python-httpx/0.27"
	start := t0.Add(3 * time.Hour)
	var fs []*event.Finding
	for i := range 5 {
		at := start.Add(time.Duration(i) * time.Minute)
		_, f := w.feed(w.ev(ps[2], at, "db_query"), w.ev(thief, at.Add(20*time.Second), "db_query"))
		fs = append(fs, f...)
	}
	f := wantFinding(t, fs, "concurrent", "concurrent_network", "self")
	if f.Evidence[0].Observed < 2 {
		t.Fatalf("evidence %+v", f.Evidence[0])
	}
	if len(findingsOf(fs, "rate")) != 0 {
		t.Fatalf("normal rate flagged: %s", dump(fs))
	}
}

// A support principal probing tools and getting refused.
func TestDenialProbing(t *testing.T) {
	w := newWorld(t, nil)
	var sup []who
	for i := range 8 {
		sup = append(sup, who{sub: fmt.Sprintf("support%d", i), group: "support", client: "claude-desktop", ip: "10.1.0.5", ua: "cd/1"})
	}
	w.normalTraffic(sup, t0, 3*time.Hour, 3)
	var fs []*event.Finding
	for i, tool := range []string{"admin_users", "db_drop", "secrets_get", "payments_refund", "shell_exec", "iam_grant"} {
		_, f := w.feed(w.ev(sup[0], t0.Add(3*time.Hour+time.Duration(i)*5*time.Second), tool, func(e *event.Event) {
			e.Outcome.Result = event.ResultDenied
		}))
		fs = append(fs, f...)
	}
	f := wantFinding(t, fs, "denials", "", "")
	if ev := f.Evidence[0]; ev.Observed < 3 || ev.Baseline > 0.1 {
		t.Fatalf("evidence %+v", ev)
	}
}

// Personal data in the arguments of send_email, even denied, and a rug pull.
func TestEgressPIIAndRugPull(t *testing.T) {
	w, ps := trained(t)
	at := t0.Add(3 * time.Hour)
	_, fs := w.feed(w.ev(ps[4], at, "acme-mail/send_email", func(e *event.Event) {
		e.PII = map[string]int{"email": 3}
		e.Outcome.Result = event.ResultDenied
	}))
	wantFinding(t, fs, "egress_pii", "pii_in_egress_args", "")
	_, fs = w.feed(w.ev(ps[5], at, "", func(e *event.Event) {
		e.MCP.Direction, e.MCP.Method = event.DirResponse, "tools/list"
		e.Attributes = map[string]string{"mcp.tool.changed": "lookup"}
	}))
	f := wantFinding(t, fs, "rug_pull", "tool_definition_changed", "rule")
	if f.Principal.Subject != ps[5].sub {
		t.Fatal(f.Principal)
	}
}

// A haul of sensitive reads followed by an egress call the principal never makes after them; a
// single read followed by one is not a finding (a record mailed is not a haul).
func TestExfiltration(t *testing.T) {
	w, ps := trained(t)
	at := t0.Add(3 * time.Hour)
	_, fs := w.feed(w.ev(ps[7], at, "db_query", sensitive(0.8, "pii")), w.ev(ps[7], at.Add(time.Minute), "http_post"))
	for _, f := range fs {
		if f.Check == "exfiltration" {
			t.Fatalf("one read then egress concluded %s", f.Summary)
		}
	}
	var evs []*event.Event
	for i := range 6 {
		evs = append(evs, w.ev(ps[6], at.Add(time.Duration(i)*10*time.Second), "db_query", sensitive(0.8, "pii")))
	}
	_, fs = w.feed(append(evs, w.ev(ps[6], at.Add(time.Minute+30*time.Second), "http_post"))...)
	f := wantFinding(t, fs, "exfiltration", "read_to_egress_probability", "self")
	if f.Evidence[0].Observed > 0.2 {
		t.Fatalf("evidence %+v", f.Evidence[0])
	}
}

// Low and slow: over an hour, a sensitive read of a new record every two minutes: no window
// check sees it, the drift check does — by its clock-steady cadence against a person's pace (the
// principal's own cadence is thin here), the hourly counts confirming it later.
func TestLowAndSlow(t *testing.T) {
	w := newWorld(t, nil)
	ps := team(10)
	w.normalTraffic(ps, t0, 6*time.Hour, 11)
	if len(w.finds) != 0 {
		t.Fatalf("findings while training:%s", dump(w.finds))
	}
	start := t0.Add(6 * time.Hour)
	var fs []*event.Finding
	for i := range 30 {
		_, f := w.feed(w.ev(ps[1], start.Add(time.Duration(i)*2*time.Minute), "db_query", sensitive(0.7, "finance"),
			func(e *event.Event) { e.MCP.ArgumentsMasked = fmt.Sprintf("select * from accounts where id=%d", i) }))
		fs = append(fs, f...)
	}
	f := wantFinding(t, fs, "drift", "", "")
	if f.Time.Sub(start) > 50*time.Minute {
		t.Fatalf("drift seen after %s", f.Time.Sub(start))
	}
	for _, c := range []string{"rate", "sensitivity", "volume"} {
		if len(findingsOf(fs, c)) != 0 {
			t.Fatalf("window check %s saw the slow drift:%s", c, dump(fs))
		}
	}
	t.Logf("drift after %s: %s", f.Time.Sub(start), f.Summary)
	var hourly bool
	for _, f := range findingsOf(fs, "drift") {
		hourly = hourly || strings.HasSuffix(f.Evidence[0].Feature, "_per_hour")
		t.Logf("drift after %s: %s", f.Time.Sub(start), f.Summary)
	}
	if !hourly {
		t.Fatal("the hourly counts never concluded")
	}
}

// Responses far larger than the principal's, at its usual pace: a bulk read the rate check
// cannot see.
func TestVolume(t *testing.T) {
	w, ps := trained(t)
	at := t0.Add(3 * time.Hour)
	var evs []*event.Event
	for i := range 3 {
		ts := at.Add(time.Duration(i) * 20 * time.Second)
		evs = append(evs, w.ev(ps[1], ts, "db_query"), w.ev(ps[1], ts.Add(300*time.Millisecond), "db_query", func(e *event.Event) {
			e.MCP.Direction, e.Size = event.DirResponse, event.Size{Response: 8 << 20}
		}))
	}
	_, fs := w.feed(evs...)
	f := wantFinding(t, fs, "volume", "response_bytes_per_min", "self")
	if ev := f.Evidence[0]; ev.Observed < 8<<20 || ev.Baseline > 50_000 {
		t.Fatalf("evidence %+v: want the megabytes observed against kilobytes", ev)
	}
	if len(findingsOf(fs, "rate")) != 0 {
		t.Fatalf("three calls in a minute judged a rate anomaly:%s", dump(fs))
	}
}

// Activity at a week hour neither the principal (with a trusted history) nor its peers ever use.
func TestOffHours(t *testing.T) {
	w, ps := trained(t)
	night := t0.Add(18 * time.Hour) // Tuesday 03:00 UTC; the team works Monday 09:00–12:00
	_, fs := w.feed(w.ev(ps[2], night, "db_query"))
	f := wantFinding(t, fs, "off_hours", "week_hour_usage", "self")
	if f.Evidence[0].Observed > 0.1 {
		t.Fatalf("evidence %+v: the hour was not unused", f.Evidence[0])
	}
	// Working hours on the next day are not off-hours.
	_, fs = w.feed(w.ev(ps[3], t0.Add(24*time.Hour+time.Hour), "db_query"))
	if len(findingsOf(fs, "off_hours")) != 0 {
		t.Fatalf("a working hour judged off-hours:%s", dump(fs))
	}
}

// A burst of sensitive reads well above the principal's busy minute, and a sensitive class it
// never touched before.
func TestSensitivity(t *testing.T) {
	w, ps := trained(t)
	at := t0.Add(3 * time.Hour)
	var evs []*event.Event
	for i := range 8 {
		evs = append(evs, w.ev(ps[4], at.Add(time.Duration(i)*6*time.Second), "file_read", sensitive(0.9, "finance")))
	}
	_, fs := w.feed(evs...)
	f := wantFinding(t, fs, "sensitivity", "sensitivity_per_min", "self")
	if ev := f.Evidence[0]; ev.Observed <= ev.Baseline {
		t.Fatalf("evidence %+v", ev)
	}
	_, fs = w.feed(w.ev(ps[5], at, "file_read", sensitive(0.9, "secret")))
	wantFinding(t, fs, "sensitivity", "new_sensitive_class", "self")
}

// A person reads sensitive data in bursts and pauses; a script pages through it at a steady slow
// pace. Against a bursty history a clock-steady cadence raises the score from five reads and is
// a finding once seven show it; a steadier-than-human but jittered one raises the score from
// seven reads and is a finding once eleven do — long before the hour's count is unusual.
func TestLowAndSlowCadence(t *testing.T) {
	for _, tc := range []struct {
		name          string
		gap, jitter   time.Duration
		provisional   bool // a signal without a finding before the finding
		findingAtRead int  // the read (1-based) that concludes
		owner         bool // the owner reads in its own session meanwhile
	}{
		{"clock", 40 * time.Second, 3 * time.Second, true, 7, false},
		{"jittered", 30 * time.Second, 20 * time.Second, true, cadenceN + 1, false},
		// The script pages in its own session while its owner keeps reading in another: the
		// owner's reads do not break the script's cadence.
		{"interleaved", 40 * time.Second, 3 * time.Second, true, 7, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, nil)
			p := analyst(3)
			rng := rand.New(rand.NewPCG(3, 3))
			at := t0
			for at.Before(t0.Add(8 * time.Hour)) {
				for range 3 + rng.IntN(3) {
					w.feed(w.ev(p, at, "db_query", sensitive(0.7, "finance")))
					at = at.Add(time.Duration(5+rng.IntN(15)) * time.Second)
				}
				at = at.Add(time.Duration(5+rng.IntN(15)) * time.Minute)
			}
			if len(w.finds) != 0 {
				t.Fatalf("findings on bursty history:%s", dump(w.finds))
			}
			at = at.Add(30 * time.Minute)
			var provisional bool
			for i := range 12 {
				at = at.Add(tc.gap + time.Duration(rng.Int64N(int64(tc.jitter))))
				if tc.owner && i%2 == 1 { // the owner's read between two of the script's
					w.feed(w.ev(p, at.Add(-time.Duration(5+rng.IntN(20))*time.Second), "db_query", sensitive(0.7, "finance"), session("owner")))
				}
				sigs, fs := w.feed(w.ev(p, at, "db_query", sensitive(0.7, "finance"), session("script")))
				found := len(findingsOf(fs, "drift")) != 0
				if i+1 < tc.findingAtRead {
					if found {
						t.Fatalf("a finding from %d reads", i+1)
					}
					for _, s := range sigs {
						provisional = provisional || s.Check == "drift" && s.Value > 0 && s.Evidence.Feature == "sensitive_read_cadence_cv"
					}
				}
				if i+1 == tc.findingAtRead {
					f := wantFinding(t, fs, "drift", "sensitive_read_cadence_cv", "self")
					if ev := f.Evidence[0]; ev.Observed > cadenceTiers[0].full || ev.Baseline < 0.8 {
						t.Fatalf("evidence %+v: want a steady pace against a bursty usual", ev)
					}
				}
			}
			if provisional != tc.provisional {
				t.Fatalf("a score-only cadence signal before the finding: %v, want %v", provisional, tc.provisional)
			}
		})
	}
}
