package notify

import (
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// EventTypeFinding is the webhook payload type of a finding, as the respond stage sends it.
const EventTypeFinding = "mcpwatch.finding"

// webhookPayload is a webhook body in the Standard Webhooks shape: a type, the finding's time,
// and the data. It has the shape of the respond stage's webhook, plus the playbook.
type webhookPayload struct {
	Type      string      `json:"type"`
	Timestamp time.Time   `json:"timestamp"`
	Data      webhookData `json:"data"`
}

type webhookData struct {
	event.Finding
	Actions  []Decided `json:"actions"`
	Playbook string    `json:"playbook,omitempty"`
	DryRun   bool      `json:"dry_run,omitempty"`
}

func webhookPayloadOf(m *Message, _ time.Time) webhookPayload {
	acts := m.Actions
	if acts == nil {
		acts = []Decided{}
	}
	return webhookPayload{Type: EventTypeFinding, Timestamp: m.Finding.Time.UTC(),
		Data: webhookData{Finding: m.Finding, Actions: acts, Playbook: m.Playbook, DryRun: m.DryRun}}
}
