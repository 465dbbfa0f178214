package eval

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/mcpwatch/mcpwatch/eval/traffic"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
	"github.com/mcpwatch/mcpwatch/internal/mask"
	"github.com/mcpwatch/mcpwatch/internal/pins"
	"github.com/mcpwatch/mcpwatch/policy"
)

// rawBuilder turns a generated call into the raw events the gateway would publish for it. What
// it shares with the gateway is the real code: the JSON-RPC parser (mcpwire.ParseMessage), the
// event builder with the default masker (masking and PII counting of arguments, URIs and prompt
// names), and the policy engine deciding the request. What it mirrors by hand, from
// ingest/mcp: the policy request (enforce.go policyRequest, without risk or device health), the
// refusal (gateway.go refuse: the request's event only, denied, 403, CodeDenied), the paired
// response event (Pair, the upstream's size and latency), and the tool-change event of a
// tools/list (pins.go ObservePins, as in "audit" pinning: audited, not blocked).
//
// Exported as [RawBuilder] for the live driver, which publishes a dataset's history with it.
type rawBuilder struct {
	pol      *policy.Policy
	builders map[string]*mcpwire.Builder
	masker   *mask.Masker
	id       int
}

func newRawBuilder(pol *policy.Policy) (*rawBuilder, error) {
	m, err := mcpwire.NewMasker(false, nil)
	if err != nil {
		return nil, err
	}
	return &rawBuilder{pol: pol, builders: map[string]*mcpwire.Builder{}, masker: m}, nil
}

// RawBuilder builds the raw events of generated calls as the gateway would publish them (see
// rawBuilder): the live driver publishes the clean history with it, straight to the raw topic.
type RawBuilder struct{ rb *rawBuilder }

// NewRawBuilder returns a builder deciding requests with pol.
func NewRawBuilder(pol *policy.Policy) (*RawBuilder, error) {
	rb, err := newRawBuilder(pol)
	if err != nil {
		return nil, err
	}
	return &RawBuilder{rb}, nil
}

// Stream builds the raw events of calls (in time order) and hands them to emit in batches, in
// event-time order: a response follows its request by the call's latency, so events are held
// until no later call can precede them.
func (b *RawBuilder) Stream(ctx context.Context, calls []traffic.Call, emit func([]*event.Event) error) error {
	return b.rb.stream(ctx, calls, emit)
}

func (rb *rawBuilder) builder(server string) *mcpwire.Builder {
	b := rb.builders[server]
	if b == nil {
		b = &mcpwire.Builder{Tenant: traffic.Tenant, Observer: "eval-gateway", Server: server, Route: "/" + server + "/mcp",
			Transport: "streamable-http", Masker: rb.masker}
		rb.builders[server] = b
	}
	return b
}

// request is the JSON-RPC request a client sends for c.
func request(c *traffic.Call, id int) ([]byte, error) {
	params := map[string]any{}
	switch c.Method {
	case "tools/call":
		params["name"], params["arguments"] = c.Tool, c.Arguments
	case "resources/read":
		params["uri"] = c.Resource
	case "prompts/get":
		params["name"], params["arguments"] = c.Prompt, c.Arguments
	}
	return json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": c.Method, "params": params})
}

// events returns the raw events of c, the request's first.
func (rb *rawBuilder) events(c *traffic.Call) ([]*event.Event, error) {
	rb.id++
	raw, err := request(c, rb.id)
	if err != nil {
		return nil, err
	}
	m, perr := mcpwire.ParseMessage(raw)
	if perr != nil {
		return nil, fmt.Errorf("call of %s at %s: %w", c.Principal, c.Time, perr)
	}
	b := rb.builder(c.Server)
	pr := event.Principal{Subject: c.Subject, ClientID: c.ClientID, Roles: c.Roles, TokenID: c.TokenID}
	ctx := &mcpwire.Context{Principal: pr, Session: c.Session, ProtocolVersion: "2025-06-18", ClientName: c.Client,
		ClientVersion: c.Version, Network: event.Network{SrcIP: c.SrcIP, UserAgent: c.UserAgent}}
	req := b.FromClient(ctx, &m)
	req.Time = c.Time
	d := rb.pol.Evaluate(policy.Request{Tenant: traffic.Tenant, Principal: pr, SourceIP: netip.MustParseAddr(c.SrcIP),
		Time: c.Time, Method: m.Method, Server: c.Server, Tool: m.Tool, ResourceURI: m.ResourceURI, Prompt: m.Prompt,
		DataClasses: req.DataClasses})
	mcpwire.SetAttr(req, "policy.effect", string(d.Effect))
	req.Outcome.PolicyRule = d.Rule
	if !d.Allowed() {
		req.Outcome = event.Outcome{Result: event.ResultDenied, Reason: d.Reason, PolicyRule: d.Rule,
			ErrorCode: mcp.CodeDenied, HTTPStatus: 403}
		b.MaskReason(req)
		return []*event.Event{req}, nil
	}
	resp := b.FromServer(ctx, &mcpwire.Message{Kind: mcpwire.KindResponse, ID: m.ID, Size: c.RespBytes})
	mcpwire.Pair(resp, mcpwire.PendingOf(req, &m, c.Time))
	resp.Time, resp.MCP.LatencyMS = c.Time.Add(c.Latency), float64(c.Latency)/float64(time.Millisecond)
	resp.Outcome.HTTPStatus = 200
	out := []*event.Event{req, resp}
	if c.ChangedTool != "" {
		ch := b.Event(ctx, event.DirResponse, nil)
		ch.Time, ch.Correlation = resp.Time, resp.Correlation
		ch.MCP.Method, ch.MCP.Tool, ch.Severity = "tools/list", c.ChangedTool, mcp.SeverityToolChanged
		ch.Attributes = map[string]string{"mcp.tool.changed": c.ChangedTool, "mcp.tool.pinning": string(pins.Audit)}
		ch.Outcome = event.Outcome{Result: event.ResultAllowed, Reason: pins.ReasonChanged, HTTPStatus: 200}
		out = append(out, ch)
	}
	return out, nil
}

// stream is [RawBuilder.Stream]: batches of about batchSize events, in time order.
func (rb *rawBuilder) stream(ctx context.Context, calls []traffic.Call, emit func([]*event.Event) error) error {
	var buf []*event.Event
	flush := func(upTo time.Time, all bool) error {
		slices.SortStableFunc(buf, func(a, b *event.Event) int { return a.Time.Compare(b.Time) })
		n := len(buf)
		if !all {
			n = sort.Search(len(buf), func(i int) bool { return !buf[i].Time.Before(upTo) })
		}
		if n == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		err := emit(buf[:n])
		buf = append(buf[:0], buf[n:]...)
		return err
	}
	for i := range calls {
		c := &calls[i]
		if len(buf) >= batchSize {
			if err := flush(c.Time, false); err != nil {
				return err
			}
		}
		evs, err := rb.events(c)
		if err != nil {
			return err
		}
		buf = append(buf, evs...)
	}
	return flush(time.Time{}, true)
}
