package notify

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/response/playbook"
)

// Message is what a notification is about: a finding and, when a playbook decided it, what
// the playbook decided. Every channel renders the same Message in its vendor's shape, carrying
// the finding's explanation and its top evidence (feature, observed against baseline, window),
// so that an analyst can answer "why?" from the notification alone.
type Message struct {
	Finding event.Finding
	// Playbook names the playbook that decided the notification; empty for the default
	// threshold response.
	Playbook string
	// Actions are the other actions decided about the finding, shown with it.
	Actions []Decided
	// DryRun marks a notification about decisions that were recorded but not carried out.
	DryRun bool
	// DedupKey, if set, is the PagerDuty dedup_key (the playbook's dedup identity); else the
	// channel's dedup_by decides it.
	DedupKey string
}

// Decided is one action decided about the finding, as notifications show it. Its JSON is that
// of the planned actions in the respond stage's webhook.
type Decided struct {
	Kind    string     `json:"kind"`
	Status  string     `json:"status,omitempty"`
	Target  string     `json:"target,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`
	Detail  string     `json:"detail,omitempty"`
}

// String says the action in words: "revoke alice until 2026-01-02T10:00:00Z (issued)".
func (d Decided) String() string {
	var b strings.Builder
	b.WriteString(d.Kind)
	if d.Target != "" {
		b.WriteString(" " + d.Target)
	}
	if d.Expires != nil {
		b.WriteString(" until " + d.Expires.UTC().Format(time.RFC3339))
	}
	if d.Status != "" {
		b.WriteString(" (" + d.Status + ")")
	}
	if d.Detail != "" {
		b.WriteString(": " + d.Detail)
	}
	return b.String()
}

// maxEvidence is how many evidence items a notification shows, most telling first.
const maxEvidence = 5

// view is a Message in vendor-neutral words, every text cleaned (see [clean]) but not yet
// escaped or clipped: each vendor does that to its own rules.
type view struct {
	title     string // the summary
	why       string // the explanation, else the summary
	score     string // "92 (severity 9, critical)"
	principal string
	detector  string // "rate / denial_spree"
	tenant    string
	playbook  string
	actions   []string
	evidence  []string
	id        string
	time      string
	tags      string
	link      string
	server    string
	tool      string
	sandbox   string
}

func newView(m *Message, findingURL string) view {
	f := &m.Finding
	v := view{
		title:    clean(f.Summary),
		why:      clean(f.Explanation),
		score:    fmt.Sprintf("%s (severity %d, %s)", num(f.Score), f.Severity, severityWord(f.Severity)),
		tenant:   clean(f.Tenant),
		playbook: clean(m.Playbook),
		id:       clean(f.ID),
		tags:     clean(strings.Join(f.Tags, ", ")),
	}
	if !f.Time.IsZero() {
		v.time = f.Time.UTC().Format(time.RFC3339)
	}
	if v.title == "" {
		v.title = "mcpwatch finding"
	}
	if v.why == "" {
		v.why = v.title
	}
	v.detector = clean(f.Detector)
	if f.Check != "" {
		v.detector += " / " + clean(f.Check)
	}
	v.principal = principalText(f.Principal)
	if m.DryRun && v.playbook != "" {
		v.playbook += " (dry run: nothing was carried out)"
	} else if m.DryRun {
		v.playbook = "(dry run: nothing was carried out)"
	}
	for _, a := range m.Actions {
		v.actions = append(v.actions, clean(a.String()))
	}
	for i := range f.Evidence {
		if len(v.evidence) == maxEvidence {
			break
		}
		v.evidence = append(v.evidence, evidenceText(&f.Evidence[i]))
	}
	s, t, sb := playbook.Resources(f)
	v.server, v.tool, v.sandbox = clean(s), clean(t), clean(sb)
	if findingURL != "" && f.ID != "" {
		v.link = strings.ReplaceAll(findingURL, "{id}", url.QueryEscape(f.ID))
	}
	return v
}

func principalText(p event.Principal) string {
	var parts []string
	switch {
	case p.Subject != "" && p.ClientID != "":
		parts = append(parts, p.Subject+" (client "+p.ClientID+")")
	case p.Subject != "":
		parts = append(parts, p.Subject)
	case p.ClientID != "":
		parts = append(parts, "client "+p.ClientID)
	default:
		parts = append(parts, "unknown principal")
	}
	if len(p.Roles) > 0 {
		parts = append(parts, "roles "+strings.Join(p.Roles, ", "))
	}
	if p.Department != "" {
		parts = append(parts, "department "+p.Department)
	}
	if p.PeerGroup != "" {
		parts = append(parts, "peer group "+p.PeerGroup)
	}
	return clean(strings.Join(parts, "; "))
}

// evidenceText says one evidence item in a line: what was observed against what is normal,
// over which window, and in words.
//
//	calls_per_min: observed 240, baseline 12 (self), 99th percentile of peers, 09:00:00–09:05:00 UTC 2026-01-02 — 20× the usual rate
func evidenceText(e *event.Evidence) string {
	var b strings.Builder
	b.WriteString(e.Feature)
	b.WriteString(": observed ")
	if e.ObservedText != "" {
		b.WriteString(strconv.Quote(e.ObservedText))
	} else {
		b.WriteString(num(e.Observed))
	}
	b.WriteString(", baseline " + num(e.Baseline))
	if e.BaselineSource != "" {
		b.WriteString(" (" + e.BaselineSource + ")")
	}
	if e.PeerPercentile != nil {
		b.WriteString(", " + num(*e.PeerPercentile) + "th percentile of peers")
	}
	if w := window(e.WindowStart, e.WindowEnd); w != "" {
		b.WriteString(", " + w)
	}
	if e.Detail != "" {
		b.WriteString(" — " + e.Detail)
	}
	return clean(b.String())
}

// window renders a window of event time, the date once when both ends share it.
func window(start, end time.Time) string {
	switch {
	case start.IsZero() && end.IsZero():
		return ""
	case start.IsZero():
		return "until " + end.UTC().Format(time.RFC3339)
	case end.IsZero():
		return "from " + start.UTC().Format(time.RFC3339)
	}
	s, e := start.UTC(), end.UTC()
	if s.Format(time.DateOnly) == e.Format(time.DateOnly) {
		return s.Format(time.TimeOnly) + "–" + e.Format(time.TimeOnly) + " UTC " + s.Format(time.DateOnly)
	}
	return s.Format(time.RFC3339) + " – " + e.Format(time.RFC3339)
}

// num formats a number briefly: 240, 0.25, 1.234e+06.
func num(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

// severityWord names a CEF severity (0–10) the way ArcSight bands it.
func severityWord(sev int) string {
	switch {
	case sev >= 9:
		return "critical"
	case sev >= 7:
		return "high"
	case sev >= 4:
		return "medium"
	}
	return "low"
}

// clean makes finding text safe to show: invalid UTF-8 becomes U+FFFD, and so do control
// characters other than newline and tab, and the bidirectional overrides and isolates that can
// make text read differently from what it is (CVE-2021-42574).
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if strings.IndexFunc(s, unsafeRune) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unsafeRune(r) {
			return '\uFFFD'
		}
		return r
	}, s)
}

func unsafeRune(r rune) bool {
	switch {
	case r == '\n' || r == '\t':
		return false
	case unicode.IsControl(r):
		return true
	case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069, r == 0x200E, r == 0x200F, r == 0x061C:
		return true
	}
	return false
}

// ellipsis ends clipped text.
const ellipsis = "…"

// clip escapes s with esc, one rune at a time, and keeps the result within limit runes: when it
// is longer it is cut before the escape of a rune (never inside one) and ends in an ellipsis.
// esc may be nil.
func clip(s string, limit int, esc func(rune) string) string {
	if limit <= 0 {
		return ""
	}
	var b strings.Builder
	n := 0
	cut := -1 // the length of b when n reached limit-1 runes: where to cut if s overflows
	for _, r := range s {
		piece := string(r)
		if esc != nil {
			piece = esc(r)
		}
		pn := utf8.RuneCountInString(piece)
		if cut < 0 && n+pn > limit-1 {
			cut = b.Len()
		}
		if n+pn > limit {
			return b.String()[:cut] + ellipsis
		}
		b.WriteString(piece)
		n += pn
	}
	return b.String()
}

// dedupKey is the PagerDuty dedup_key of m: m.DedupKey, or by finding id, or by tenant,
// principal, detector and check. A key that is too long for PagerDuty (255) or holds anything
// but printable ASCII is replaced by its SHA-256, which keeps it stable.
func dedupKey(m *Message, by DedupBy) string {
	f := &m.Finding
	k := m.DedupKey
	switch {
	case k != "":
	case by == DedupFinding:
		k = "mcpwatch/finding/" + f.ID
	default:
		who := f.Principal.Subject
		if who == "" {
			who = "client:" + f.Principal.ClientID
		}
		k = "mcpwatch/" + f.Tenant + "/" + who + "/" + f.Detector + "/" + f.Check
	}
	if len(k) <= 255 && strings.IndexFunc(k, func(r rune) bool { return r < 0x20 || r > 0x7e }) < 0 {
		return k
	}
	sum := sha256.Sum256([]byte(k))
	return "mcpwatch/sha256/" + hex.EncodeToString(sum[:])
}
