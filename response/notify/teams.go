package notify

import "strings"

// Adaptive Card shape accepted by Teams Workflows webhooks ("Post to a channel when a webhook
// request is received"): a message whose one attachment is an Adaptive Card. Version 1.4 is
// rendered by Teams on desktop, web and mobile.
const (
	teamsContentType = "application/vnd.microsoft.card.adaptive"
	teamsSchema      = "http://adaptivecards.io/schemas/adaptive-card.json"
	teamsCardVersion = "1.4"
	teamsTextMax     = 2000 // per text; Teams refuses messages over about 28 KB
	teamsTitleMax    = 300
)

type teamsMessage struct {
	Type        string            `json:"type"` // "message"
	Attachments []teamsAttachment `json:"attachments"`
}

type teamsAttachment struct {
	ContentType string    `json:"contentType"`
	ContentURL  *string   `json:"contentUrl"` // null, as in Microsoft's examples
	Content     teamsCard `json:"content"`
}

type teamsCard struct {
	Schema  string        `json:"$schema"`
	Type    string        `json:"type"` // "AdaptiveCard"
	Version string        `json:"version"`
	Body    []teamsElem   `json:"body"`
	Actions []teamsAction `json:"actions,omitempty"`
}

// teamsElem is a TextBlock or a FactSet.
type teamsElem struct {
	Type     string      `json:"type"`
	Text     string      `json:"text,omitempty"`
	Wrap     bool        `json:"wrap,omitempty"`
	Size     string      `json:"size,omitempty"`
	Weight   string      `json:"weight,omitempty"`
	Color    string      `json:"color,omitempty"`
	IsSubtle bool        `json:"isSubtle,omitempty"`
	Spacing  string      `json:"spacing,omitempty"`
	Facts    []teamsFact `json:"facts,omitempty"`
}

type teamsFact struct {
	Title string `json:"title"`
	Value string `json:"value"`
}

type teamsAction struct {
	Type  string `json:"type"` // "Action.OpenUrl"
	Title string `json:"title"`
	URL   string `json:"url"`
}

// teamsEscape keeps finding text from being read as the markdown Teams renders in TextBlocks and
// facts: brackets are escaped so that no link can be disguised ([click](https://evil)), and
// "{{" is broken so that no {{DATE()}} or {{TIME()}} function is evaluated. Bare URLs stay
// visible as they are.
func teamsEscape(r rune) string {
	switch r {
	case '[', ']', '\\':
		return `\` + string(r)
	case '{':
		return "{\u200B" // a zero-width space after each brace: "{{" never forms
	}
	return string(r)
}

func teamsText(s string) string { return clip(s, teamsTextMax, teamsEscape) }

// teamsPayload renders v as a Teams message with one Adaptive Card: the summary as a bold
// heading (red from high severity), the explanation, a fact set (score, principal, detector,
// tenant, resources, playbook), the evidence and actions as lists, a subtle line with the
// finding id, time and tags, and with a finding URL an Open button.
func teamsPayload(v *view, severity int) teamsMessage {
	color := "Default"
	if severity >= 7 {
		color = "Attention"
	} else if severity >= 4 {
		color = "Warning"
	}
	body := []teamsElem{
		{Type: "TextBlock", Text: clip(strings.ReplaceAll(v.title, "\n", " "), teamsTitleMax, teamsEscape), Wrap: true, Size: "Large", Weight: "Bolder", Color: color},
		{Type: "TextBlock", Text: teamsText(v.why), Wrap: true},
	}
	facts := []teamsFact{{"Score", teamsText(v.score)}, {"Principal", teamsText(v.principal)}, {"Detector", teamsText(v.detector)}}
	for _, r := range [][2]string{{"Tenant", v.tenant}, {"Server", v.server}, {"Tool", v.tool}, {"Sandbox", v.sandbox}, {"Playbook", v.playbook}} {
		if r[1] != "" {
			facts = append(facts, teamsFact{r[0], teamsText(r[1])})
		}
	}
	body = append(body, teamsElem{Type: "FactSet", Facts: facts})
	for _, l := range [][2]any{{"Evidence", v.evidence}, {"Actions", v.actions}} {
		lines := l[1].([]string)
		if len(lines) == 0 {
			continue
		}
		body = append(body, teamsElem{Type: "TextBlock", Text: l[0].(string), Weight: "Bolder", Wrap: true, Spacing: "Medium"})
		for _, line := range lines {
			body = append(body, teamsElem{Type: "TextBlock", Text: "• " + teamsText(line), Wrap: true})
		}
	}
	foot := "finding " + v.id
	if v.time != "" {
		foot += " · " + v.time
	}
	if v.tags != "" {
		foot += " · tags: " + v.tags
	}
	body = append(body, teamsElem{Type: "TextBlock", Text: teamsText(foot), Wrap: true, IsSubtle: true, Size: "Small", Spacing: "Medium"})
	card := teamsCard{Schema: teamsSchema, Type: "AdaptiveCard", Version: teamsCardVersion, Body: body}
	if v.link != "" {
		card.Actions = []teamsAction{{Type: "Action.OpenUrl", Title: "Open finding", URL: v.link}}
	}
	return teamsMessage{Type: "message", Attachments: []teamsAttachment{{ContentType: teamsContentType, Content: card}}}
}
