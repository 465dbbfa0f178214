package notify

import (
	"encoding/json"
	"math"
	"strings"
	"time"
)

// PagerDuty Events API v2 limits (developer.pagerduty.com, "Send an Alert Event").
const (
	pdSummaryMax = 1024
	pdFieldMax   = 255 // source, component, group, class: no documented limit, kept short
	pdDetailMax  = 2000
	pdEventIDs   = 10
	pdEvidence   = 10
)

// PagerDuty severities, the only four the API accepts.
const (
	pdCritical = "critical"
	pdError    = "error"
	pdWarning  = "warning"
	pdInfo     = "info"
)

type pdLink struct {
	Href string `json:"href"`
	Text string `json:"text"`
}

type pdPayload struct {
	Summary       string         `json:"summary"`
	Source        string         `json:"source"`
	Severity      string         `json:"severity"`
	Timestamp     string         `json:"timestamp,omitempty"`
	Component     string         `json:"component,omitempty"`
	Group         string         `json:"group,omitempty"`
	Class         string         `json:"class,omitempty"`
	CustomDetails map[string]any `json:"custom_details,omitempty"`
}

// pdEvent is a trigger event of the Events API v2.
type pdEvent struct {
	RoutingKey  string    `json:"routing_key"`
	EventAction string    `json:"event_action"`
	DedupKey    string    `json:"dedup_key"`
	Payload     pdPayload `json:"payload"`
	Client      string    `json:"client"`
	Links       []pdLink  `json:"links,omitempty"`
}

// pdSeverity maps a CEF severity (0–10) to PagerDuty's: 9–10 critical, 7–8 error, 4–6 warning,
// else info — the same bands as [severityWord].
func pdSeverity(sev int) string {
	switch {
	case sev >= 9:
		return pdCritical
	case sev >= 7:
		return pdError
	case sev >= 4:
		return pdWarning
	}
	return pdInfo
}

// pdEvidenceItem is one evidence item in custom_details, numbers kept as numbers.
type pdEvidenceItem struct {
	Detector       string   `json:"detector"`
	Check          string   `json:"check,omitempty"`
	Feature        string   `json:"feature"`
	Observed       float64  `json:"observed"`
	ObservedText   string   `json:"observed_text,omitempty"`
	Baseline       float64  `json:"baseline"`
	BaselineSource string   `json:"baseline_source,omitempty"`
	PeerPercentile *float64 `json:"peer_percentile,omitempty"`
	Contribution   float64  `json:"contribution,omitempty"`
	Window         string   `json:"window,omitempty"`
	Detail         string   `json:"detail,omitempty"`
}

// pdPayloadOf renders m as a trigger event. summary is the finding's summary with its score and
// principal (at most 1024 characters); source is the MCP server the finding names, else
// "mcpwatch/<tenant>"; component the tool, else the detector; group the tenant; class
// detector/check. custom_details carries the explanation, the principal, the top evidence with
// numbers as numbers, the decided actions and a sample of event ids.
func pdPayloadOf(m *Message, v *view, routingKey string, by DedupBy) pdEvent {
	f := &m.Finding
	source := v.server
	if source == "" {
		source = "mcpwatch/" + v.tenant
	}
	component := v.tool
	if component == "" {
		component = clean(f.Detector)
	}
	details := map[string]any{
		"explanation": clip(v.why, pdDetailMax, nil),
		"score":       finite(f.Score),
		"severity":    f.Severity,
		"principal":   clip(v.principal, pdDetailMax, nil),
		"detector":    clean(f.Detector),
		"finding_id":  v.id,
		"tenant":      v.tenant,
	}
	if f.Check != "" {
		details["check"] = clean(f.Check)
	}
	if v.playbook != "" {
		details["playbook"] = v.playbook
	}
	if len(v.actions) > 0 {
		details["actions"] = clipAll(v.actions, pdDetailMax)
	}
	if len(f.Tags) > 0 {
		details["tags"] = clipAll(f.Tags, pdFieldMax)
	}
	if n := min(len(f.EventIDs), pdEventIDs); n > 0 {
		details["event_ids"] = clipAll(f.EventIDs[:n], pdFieldMax)
	}
	var ev []pdEvidenceItem
	for i := range f.Evidence[:min(len(f.Evidence), pdEvidence)] {
		e := &f.Evidence[i]
		ev = append(ev, pdEvidenceItem{Detector: clip(clean(e.Detector), pdFieldMax, nil), Check: clip(clean(e.Check), pdFieldMax, nil),
			Feature: clip(clean(e.Feature), pdFieldMax, nil), Observed: finite(e.Observed), ObservedText: clip(clean(e.ObservedText), pdDetailMax, nil),
			Baseline: finite(e.Baseline), BaselineSource: clip(clean(e.BaselineSource), pdFieldMax, nil), PeerPercentile: finitePtr(e.PeerPercentile),
			Contribution: finite(e.Contribution), Window: window(e.WindowStart, e.WindowEnd), Detail: clip(clean(e.Detail), pdDetailMax, nil)})
	}
	if len(ev) > 0 {
		details["evidence"] = ev
	}
	ts := ""
	if !f.Time.IsZero() {
		ts = f.Time.UTC().Format(time.RFC3339Nano)
	}
	summary := v.title + " — score " + num(f.Score) + " — " + v.principal
	e := pdEvent{RoutingKey: routingKey, EventAction: "trigger", DedupKey: dedupKey(m, by), Client: "mcpwatch",
		Payload: pdPayload{Summary: clip(strings.ReplaceAll(summary, "\n", " "), pdSummaryMax, nil),
			Source: clip(source, pdFieldMax, nil), Severity: pdSeverity(f.Severity), Timestamp: ts,
			Component: clip(component, pdFieldMax, nil), Group: clip(v.tenant, pdFieldMax, nil),
			Class: clip(v.detector, pdFieldMax, nil), CustomDetails: details}}
	if v.link != "" {
		e.Links = []pdLink{{Href: v.link, Text: "Finding " + clip(v.id, 100, nil) + " in mcpwatch"}}
	}
	return e
}

func clipAll(ss []string, limit int) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = clip(clean(s), limit, nil)
	}
	return out
}

// pdAnswer is the Events API's answer: 202 {"status":"success","dedup_key":...}, 400
// {"status":"invalid event","message":...,"errors":[...]}.
type pdAnswer struct {
	Status   string   `json:"status"`
	Message  string   `json:"message"`
	DedupKey string   `json:"dedup_key"`
	Errors   []string `json:"errors"`
}

// pdDescribe adds what PagerDuty said to a delivery's detail: the dedup key it filed the event
// under, or why it refused the event.
func pdDescribe(body []byte, ok bool) string {
	var a pdAnswer
	if json.Unmarshal(body, &a) != nil {
		return ""
	}
	if ok {
		if a.DedupKey == "" {
			return ""
		}
		return "dedup_key " + clip(clean(a.DedupKey), 300, nil)
	}
	msg := a.Message
	if len(a.Errors) > 0 {
		msg += ": " + strings.Join(a.Errors, "; ")
	}
	return clip(clean(msg), 500, nil)
}

// finite keeps a number encodable as JSON: NaN becomes 0, infinities the largest float.
func finite(v float64) float64 {
	switch {
	case math.IsNaN(v):
		return 0
	case math.IsInf(v, 1):
		return math.MaxFloat64
	case math.IsInf(v, -1):
		return -math.MaxFloat64
	}
	return v
}

func finitePtr(v *float64) *float64 {
	if v == nil {
		return nil
	}
	f := finite(*v)
	return &f
}
