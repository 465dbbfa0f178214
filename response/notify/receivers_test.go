package notify

// Local receivers that check what each vendor documents about its payloads, so that a test fails
// when a payload would be refused (or shown wrongly) by the real service:
//
//   - Slack incoming webhooks and Block Kit (docs.slack.dev/reference/block-kit/blocks): text
//     objects are plain_text or mrkdwn; header text is plain_text ≤ 150; section text ≤ 3000,
//     fields ≤ 10 of ≤ 2000; context ≤ 10 elements; buttons text ≤ 75, url ≤ 3000; ≤ 50
//     blocks. Answers 200 "ok", or 400 "invalid_blocks".
//   - PagerDuty Events API v2 (developer.pagerduty.com/docs/events-api-v2/trigger-events):
//     routing_key of 32 characters, event_action trigger|acknowledge|resolve, dedup_key ≤ 255,
//     payload.summary ≤ 1024, payload.source, payload.severity critical|error|warning|info,
//     timestamp ISO 8601, custom_details an object, links {href, text}. Answers 202 with the
//     dedup_key, 400 "invalid event" with errors; keeps one alert per dedup_key, as PagerDuty does.
//   - Teams Workflows webhooks with an Adaptive Card (learn.microsoft.com, "Create incoming
//     webhooks with Workflows"; adaptivecards.io schema): a message whose attachments hold one
//     card of contentType application/vnd.microsoft.card.adaptive; the card's type AdaptiveCard,
//     a version, a body of known elements; the whole message under Teams' 28 KB. Answers 202.

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// receiver is a local vendor endpoint: it checks each request with check, records it, and
// answers with the scripted statuses in turn (0: the vendor's own answer) and then its own.
type receiver struct {
	*httptest.Server
	mu        sync.Mutex
	script    []scripted
	bodies    [][]byte
	headers   []http.Header
	problems  []string
	check     func(body []byte) []string
	ok        func(w http.ResponseWriter, body []byte)
	alertKeys map[string]int // PagerDuty: posts per dedup_key
	pagerDuty bool           // answer invalid events the PagerDuty way
}

type scripted struct {
	code       int
	retryAfter string
}

func newReceiver(t *testing.T, check func([]byte) []string, ok func(http.ResponseWriter, []byte), script ...scripted) *receiver {
	t.Helper()
	r := &receiver{script: script, check: check, ok: ok, alertKeys: map[string]int{}}
	if ok == nil { // PagerDuty
		r.pagerDuty, r.ok = true, r.pdAccept
	}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var problems []string
	if req.Method != http.MethodPost {
		problems = append(problems, "method "+req.Method+", want POST")
	}
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		problems = append(problems, fmt.Sprintf("Content-Type %q, want application/json", req.Header.Get("Content-Type")))
	}
	if !json.Valid(body) {
		problems = append(problems, "body is not JSON")
	} else {
		problems = append(problems, r.check(body)...)
	}
	r.mu.Lock()
	n := len(r.bodies)
	r.bodies = append(r.bodies, body)
	r.headers = append(r.headers, req.Header.Clone())
	r.problems = append(r.problems, problems...)
	var s scripted
	if n < len(r.script) {
		s = r.script[n]
	}
	r.mu.Unlock()
	if s.code != 0 {
		if s.retryAfter != "" {
			w.Header().Set("Retry-After", s.retryAfter)
		}
		w.WriteHeader(s.code)
		_, _ = io.WriteString(w, http.StatusText(s.code))
		return
	}
	if len(problems) > 0 && r.pagerDuty {
		// PagerDuty's documented answer to an invalid event.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "invalid event", "message": "Event object is invalid", "errors": problems})
		return
	}
	if len(problems) > 0 {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, "invalid_payload: "+strings.Join(problems, "; "))
		return
	}
	r.ok(w, body)
}

// requests returns the bodies received so far.
func (r *receiver) requests() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.bodies...)
}

// shapeProblems returns what the receiver found wrong with the payloads.
func (r *receiver) shapeProblems() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.problems...)
}

func runes(s string) int { return utf8.RuneCountInString(s) }

// --- Slack ---

func slackReceiver(t *testing.T, script ...scripted) *receiver {
	return newReceiver(t, checkSlack, func(w http.ResponseWriter, _ []byte) {
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "ok")
	}, script...)
}

// checkSlack checks an incoming-webhook message against the Block Kit reference.
func checkSlack(body []byte) (p []string) {
	var m struct {
		Text   *string          `json:"text"`
		Blocks []map[string]any `json:"blocks"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return []string{"slack message: " + err.Error()}
	}
	if m.Text == nil || *m.Text == "" {
		p = append(p, "no top-level text: notifications and old clients show nothing")
	} else {
		p = append(p, mrkdwnProblems("text", *m.Text)...)
	}
	if len(m.Blocks) == 0 || len(m.Blocks) > 50 {
		p = append(p, fmt.Sprintf("%d blocks, want 1–50", len(m.Blocks)))
	}
	for i, b := range m.Blocks {
		where := fmt.Sprintf("blocks[%d]", i)
		switch b["type"] {
		case "header":
			p = append(p, textObject(where+".text", b["text"], "plain_text", 150)...)
			p = append(p, onlyKeys(where, b, "type", "text", "block_id")...)
		case "section":
			if b["text"] == nil && b["fields"] == nil {
				p = append(p, where+": a section needs text or fields")
			}
			if b["text"] != nil {
				p = append(p, textObject(where+".text", b["text"], "", 3000)...)
			}
			if fs, ok := b["fields"]; ok {
				fields, _ := fs.([]any)
				if len(fields) == 0 || len(fields) > 10 {
					p = append(p, fmt.Sprintf("%s.fields: %d, want 1–10", where, len(fields)))
				}
				for j, f := range fields {
					p = append(p, textObject(fmt.Sprintf("%s.fields[%d]", where, j), f, "", 2000)...)
				}
			}
			p = append(p, onlyKeys(where, b, "type", "text", "fields", "block_id", "accessory")...)
		case "context":
			els, _ := b["elements"].([]any)
			if len(els) == 0 || len(els) > 10 {
				p = append(p, fmt.Sprintf("%s.elements: %d, want 1–10", where, len(els)))
			}
			for j, e := range els {
				p = append(p, textObject(fmt.Sprintf("%s.elements[%d]", where, j), e, "", 3000)...)
			}
		case "actions":
			els, _ := b["elements"].([]any)
			if len(els) == 0 || len(els) > 25 {
				p = append(p, fmt.Sprintf("%s.elements: %d, want 1–25", where, len(els)))
			}
			for j, e := range els {
				w := fmt.Sprintf("%s.elements[%d]", where, j)
				btn, _ := e.(map[string]any)
				if btn["type"] != "button" {
					p = append(p, w+": not a button")
					continue
				}
				p = append(p, textObject(w+".text", btn["text"], "plain_text", 75)...)
				if u, _ := btn["url"].(string); u == "" || runes(u) > 3000 {
					p = append(p, w+".url: want 1–3000 characters")
				}
			}
		default:
			p = append(p, fmt.Sprintf("%s: unknown block type %v", where, b["type"]))
		}
	}
	return p
}

// textObject checks a Block Kit text object: its type (want, or either kind), its text length,
// and that finding text cannot mention or link.
func textObject(where string, v any, want string, limit int) (p []string) {
	o, ok := v.(map[string]any)
	if !ok {
		return []string{where + ": not a text object"}
	}
	typ, _ := o["type"].(string)
	text, isStr := o["text"].(string)
	switch {
	case typ != "plain_text" && typ != "mrkdwn":
		p = append(p, fmt.Sprintf("%s.type %q", where, typ))
	case want != "" && typ != want:
		p = append(p, fmt.Sprintf("%s.type %q, want %s", where, typ, want))
	}
	if !isStr || text == "" {
		p = append(p, where+".text: want a non-empty string")
	}
	if n := runes(text); n > limit {
		p = append(p, fmt.Sprintf("%s.text: %d characters, limit %d", where, n, limit))
	}
	p = append(p, mrkdwnProblems(where, text)...) // Slack wants &, <, > escaped in any text
	return p
}

// mrkdwnProblems finds Slack control sequences in mrkdwn: the payloads never make links or
// mentions in mrkdwn (the button carries the link), so any '<' or '>' came from finding text,
// and an '&' must start an escape.
func mrkdwnProblems(where, text string) (p []string) {
	if strings.ContainsAny(text, "<>") {
		p = append(p, where+": unescaped < or > in mrkdwn (a mention or a disguised link)")
	}
	for i := strings.IndexByte(text, '&'); i >= 0; i = next(text, i) {
		rest := text[i:]
		if !strings.HasPrefix(rest, "&amp;") && !strings.HasPrefix(rest, "&lt;") && !strings.HasPrefix(rest, "&gt;") {
			p = append(p, where+": unescaped &")
			break
		}
	}
	return p
}

func next(s string, i int) int {
	j := strings.IndexByte(s[i+1:], '&')
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

func onlyKeys(where string, m map[string]any, keys ...string) (p []string) {
	for k := range m {
		known := false
		for _, w := range keys {
			known = known || k == w
		}
		if !known {
			p = append(p, fmt.Sprintf("%s: unknown key %q", where, k))
		}
	}
	return p
}

// --- PagerDuty ---

func pdReceiver(t *testing.T, script ...scripted) *receiver {
	return newReceiver(t, checkPagerDuty, nil, script...)
}

// pdAccept answers a valid event as PagerDuty does, and counts it under its dedup_key.
func (r *receiver) pdAccept(w http.ResponseWriter, body []byte) {
	var e struct {
		DedupKey string `json:"dedup_key"`
	}
	_ = json.Unmarshal(body, &e)
	r.mu.Lock()
	r.alertKeys[e.DedupKey]++
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "success", "message": "Event processed", "dedup_key": e.DedupKey})
}

// checkPagerDuty checks a trigger event against the Events API v2 reference.
func checkPagerDuty(body []byte) (p []string) {
	var e map[string]any
	if err := json.Unmarshal(body, &e); err != nil {
		return []string{err.Error()}
	}
	p = append(p, onlyKeys("event", e, "routing_key", "event_action", "dedup_key", "payload", "images", "links", "client", "client_url")...)
	if k, _ := e["routing_key"].(string); len(k) != 32 {
		p = append(p, fmt.Sprintf("Length of 'routing_key' is incorrect (should be 32 characters), got %d", len(k)))
	}
	switch e["event_action"] {
	case "trigger", "acknowledge", "resolve":
	default:
		p = append(p, fmt.Sprintf("'event_action' is invalid: %v", e["event_action"]))
	}
	if k, ok := e["dedup_key"].(string); !ok || k == "" || len(k) > 255 {
		p = append(p, "dedup_key: want 1–255 characters")
	}
	pl, ok := e["payload"].(map[string]any)
	if !ok {
		return append(p, "'payload' is missing or not an object")
	}
	p = append(p, onlyKeys("payload", pl, "summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details")...)
	if s, _ := pl["summary"].(string); s == "" || runes(s) > 1024 {
		p = append(p, fmt.Sprintf("'payload.summary' must be 1–1024 characters, got %d", runes(s)))
	}
	if s, _ := pl["source"].(string); s == "" {
		p = append(p, "'payload.source' is missing or blank")
	}
	switch pl["severity"] {
	case "critical", "error", "warning", "info":
	default:
		p = append(p, fmt.Sprintf("'payload.severity' is invalid (must be one of critical, error, warning, info): %v", pl["severity"]))
	}
	if ts, ok := pl["timestamp"]; ok {
		s, _ := ts.(string)
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			p = append(p, "'payload.timestamp' is not ISO 8601: "+s)
		}
	}
	for _, k := range []string{"component", "group", "class"} {
		if v, ok := pl[k]; ok {
			if _, isStr := v.(string); !isStr {
				p = append(p, "'payload."+k+"' must be a string")
			}
		}
	}
	if cd, ok := pl["custom_details"]; ok {
		if _, isObj := cd.(map[string]any); !isObj {
			p = append(p, "'payload.custom_details' must be an object")
		}
	}
	if ls, ok := e["links"]; ok {
		links, _ := ls.([]any)
		for i, l := range links {
			lm, _ := l.(map[string]any)
			if h, _ := lm["href"].(string); h == "" {
				p = append(p, fmt.Sprintf("links[%d].href missing", i))
			}
			if _, ok := lm["text"].(string); !ok {
				p = append(p, fmt.Sprintf("links[%d].text must be a string", i))
			}
		}
	}
	return p
}

// --- Teams ---

func teamsReceiver(t *testing.T, script ...scripted) *receiver {
	return newReceiver(t, checkTeams, func(w http.ResponseWriter, _ []byte) { w.WriteHeader(http.StatusAccepted) }, script...)
}

// checkTeams checks a Workflows webhook message with an Adaptive Card.
func checkTeams(body []byte) (p []string) {
	if len(body) > 28<<10 {
		p = append(p, fmt.Sprintf("message is %d bytes, Teams refuses more than 28 KB", len(body)))
	}
	var m struct {
		Type        string `json:"type"`
		Attachments []struct {
			ContentType string         `json:"contentType"`
			Content     map[string]any `json:"content"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return []string{err.Error()}
	}
	if m.Type != "message" {
		p = append(p, fmt.Sprintf("type %q, want message", m.Type))
	}
	if len(m.Attachments) != 1 {
		return append(p, fmt.Sprintf("%d attachments, want 1", len(m.Attachments)))
	}
	a := m.Attachments[0]
	if a.ContentType != "application/vnd.microsoft.card.adaptive" {
		p = append(p, "contentType "+a.ContentType)
	}
	c := a.Content
	if c["type"] != "AdaptiveCard" {
		p = append(p, fmt.Sprintf("content.type %v, want AdaptiveCard", c["type"]))
	}
	switch c["version"] {
	case "1.0", "1.1", "1.2", "1.3", "1.4", "1.5":
	default:
		p = append(p, fmt.Sprintf("content.version %v: Teams renders 1.0–1.5", c["version"]))
	}
	if s, _ := c["$schema"].(string); s != "http://adaptivecards.io/schemas/adaptive-card.json" {
		p = append(p, "content.$schema "+s)
	}
	elems, _ := c["body"].([]any)
	if len(elems) == 0 {
		p = append(p, "content.body is empty")
	}
	for i, e := range elems {
		em, _ := e.(map[string]any)
		where := fmt.Sprintf("body[%d]", i)
		switch em["type"] {
		case "TextBlock":
			if s, _ := em["text"].(string); s == "" {
				p = append(p, where+".text: want a non-empty string")
			} else {
				p = append(p, teamsMarkdownProblems(where, s)...)
			}
			for k, allowed := range map[string][]string{"size": {"Small", "Default", "Medium", "Large", "ExtraLarge"},
				"weight": {"Lighter", "Default", "Bolder"}, "color": {"Default", "Dark", "Light", "Accent", "Good", "Warning", "Attention"},
				"spacing": {"None", "Small", "Default", "Medium", "Large", "ExtraLarge", "Padding"}} {
				if v, ok := em[k]; ok && !contains(allowed, v) {
					p = append(p, fmt.Sprintf("%s.%s %v not in %v", where, k, v, allowed))
				}
			}
		case "FactSet":
			facts, _ := em["facts"].([]any)
			if len(facts) == 0 {
				p = append(p, where+".facts is empty")
			}
			for j, f := range facts {
				fm, _ := f.(map[string]any)
				title, ok1 := fm["title"].(string)
				value, ok2 := fm["value"].(string)
				if !ok1 || !ok2 || title == "" {
					p = append(p, fmt.Sprintf("%s.facts[%d]: want title and value strings", where, j))
				}
				p = append(p, teamsMarkdownProblems(fmt.Sprintf("%s.facts[%d]", where, j), value)...)
			}
		default:
			p = append(p, fmt.Sprintf("%s: unexpected element %v", where, em["type"]))
		}
	}
	if acts, ok := c["actions"].([]any); ok {
		for i, a := range acts {
			am, _ := a.(map[string]any)
			if am["type"] != "Action.OpenUrl" || am["url"] == "" || am["title"] == "" {
				p = append(p, fmt.Sprintf("actions[%d]: want Action.OpenUrl with title and url", i))
			}
		}
	}
	return p
}

// teamsMarkdownProblems finds markdown links and template functions that only finding text could
// have put there: the cards never make links in text (the Open button does).
func teamsMarkdownProblems(where, s string) (p []string) {
	unescaped := strings.NewReplacer(`\\`, "", `\[`, "", `\]`, "").Replace(s)
	if strings.Contains(unescaped, "](") || strings.ContainsAny(unescaped, "[]") {
		p = append(p, where+": unescaped markdown link brackets")
	}
	if strings.Contains(s, "{{") {
		p = append(p, where+": {{ would start a template function")
	}
	return p
}

func contains(list []string, v any) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}
