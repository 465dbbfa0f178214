package notify

import (
	"strings"
)

// Slack Block Kit limits (docs.slack.dev, "Blocks" reference), counted in characters.
const (
	slackHeaderMax   = 150
	slackSectionMax  = 3000
	slackFieldMax    = 2000
	slackFieldsMax   = 10
	slackBlocksMax   = 50
	slackContextMax  = 10 // elements of a context block
	slackButtonText  = 75
	slackButtonURL   = 3000
	slackFallbackMax = 3000 // the top-level text: Slack's limit is 40 000, a notification needs far less
	slackLineMax     = 500  // one evidence or action line
)

type slackText struct {
	Type  string `json:"type"` // plain_text or mrkdwn
	Text  string `json:"text"`
	Emoji *bool  `json:"emoji,omitempty"`
}

type slackElement struct {
	Type string `json:"type"` // mrkdwn (in context) or button (in actions)
	Text any    `json:"text"` // a string for mrkdwn, a plain_text object for a button
	URL  string `json:"url,omitempty"`
}

type slackBlock struct {
	Type     string         `json:"type"`
	Text     *slackText     `json:"text,omitempty"`
	Fields   []slackText    `json:"fields,omitempty"`
	Elements []slackElement `json:"elements,omitempty"`
}

// slackMessage is an incoming-webhook message: blocks, and text as the fallback for
// notifications and clients that cannot show blocks.
type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

// slackEscape escapes the three characters Slack's mrkdwn gives meaning to, so finding text can
// neither mention (<!channel>, <@U123>) nor disguise a link (<https://evil|click>).
func slackEscape(r rune) string {
	switch r {
	case '&':
		return "&amp;"
	case '<':
		return "&lt;"
	case '>':
		return "&gt;"
	}
	return string(r)
}

// slackCode is text for inside `code`: escaped, with backticks that would end the span replaced.
func slackCode(r rune) string {
	if r == '`' {
		return "'"
	}
	return slackEscape(r)
}

func mrkdwn(s string) slackText { return slackText{Type: "mrkdwn", Text: s} }

// slackField is a field with a bold label over its escaped value, within the field limit.
func slackField(label, value string) slackText {
	head := "*" + label + "*\n"
	return mrkdwn(head + clip(value, slackFieldMax-len(head), slackEscape))
}

// slackPayload renders v as a Block Kit message: a header with the summary, a section with the
// explanation and up to ten fields, a section of evidence, actions, a context line (finding id,
// time, tags) and, with a finding URL, a button to it. Every text is escaped and clipped to
// Slack's limits. The header is plain text, escaped too: Slack asks for &, < and > escaped in
// any text it is sent.
func slackPayload(v *view) slackMessage {
	noEmoji := false
	blocks := []slackBlock{{Type: "header", Text: &slackText{Type: "plain_text",
		Text: clip(strings.ReplaceAll(v.title, "\n", " "), slackHeaderMax, slackEscape), Emoji: &noEmoji}}}

	why := "*Why:* "
	fields := []slackText{slackField("Score", v.score), slackField("Principal", v.principal), slackField("Detector", v.detector)}
	if v.tenant != "" {
		fields = append(fields, slackField("Tenant", v.tenant))
	}
	for _, r := range [][2]string{{"Server", v.server}, {"Tool", v.tool}, {"Sandbox", v.sandbox}, {"Playbook", v.playbook}} {
		if r[1] != "" && len(fields) < slackFieldsMax {
			fields = append(fields, slackField(r[0], r[1]))
		}
	}
	blocks = append(blocks, slackBlock{Type: "section", Text: ptr(mrkdwn(why + clip(v.why, slackSectionMax-len(why), slackEscape))), Fields: fields})

	if len(v.evidence) > 0 {
		blocks = append(blocks, slackBlock{Type: "section", Text: ptr(mrkdwn(slackList("*Evidence*", v.evidence)))})
	}
	if len(v.actions) > 0 {
		blocks = append(blocks, slackBlock{Type: "section", Text: ptr(mrkdwn(slackList("*Actions*", v.actions)))})
	}

	ctx := []slackElement{{Type: "mrkdwn", Text: "finding `" + clip(v.id, 200, slackCode) + "`"}}
	if v.time != "" {
		ctx = append(ctx, slackElement{Type: "mrkdwn", Text: v.time})
	}
	if v.tags != "" {
		ctx = append(ctx, slackElement{Type: "mrkdwn", Text: "tags: " + clip(v.tags, slackFieldMax, slackEscape)})
	}
	blocks = append(blocks, slackBlock{Type: "context", Elements: ctx[:min(len(ctx), slackContextMax)]})

	if v.link != "" && len(v.link) <= slackButtonURL {
		blocks = append(blocks, slackBlock{Type: "actions", Elements: []slackElement{{Type: "button",
			Text: slackText{Type: "plain_text", Text: clip("Open finding", slackButtonText, nil)}, URL: v.link}}})
	}

	fallback := "mcpwatch: " + v.title + " — score " + v.score + " — " + v.principal
	return slackMessage{Text: clip(fallback, slackFallbackMax, slackEscape), Blocks: blocks[:min(len(blocks), slackBlocksMax)]}
}

// slackList is a bold heading over bulleted, escaped lines, within the section limit: lines that
// do not fit are counted instead.
func slackList(heading string, lines []string) string {
	var b strings.Builder
	b.WriteString(heading)
	budget := slackSectionMax - len([]rune(heading))
	for i, l := range lines {
		item := "\n• " + clip(l, slackLineMax, slackEscape)
		if n := len([]rune(item)); n <= budget-40 { // keep room for the "more" note
			b.WriteString(item)
			budget -= n
			continue
		}
		b.WriteString("\n… and " + num(float64(len(lines)-i)) + " more")
		break
	}
	return b.String()
}

func ptr[T any](v T) *T { return &v }
