package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/mcpwatch/mcpwatch/event"
)

// Producer writes one record to the approvals topic and returns once Kafka has acknowledged it.
type Producer interface {
	Produce(ctx context.Context, key string, value []byte) error
}

// ProducerFunc adapts a function to [Producer].
type ProducerFunc func(ctx context.Context, key string, value []byte) error

// Produce calls f.
func (f ProducerFunc) Produce(ctx context.Context, key string, value []byte) error {
	return f(ctx, key, value)
}

// ActionRecorder records an approval step as an [event.Action] on the actions topic, for the
// signed audit trail. It must not block for long.
type ActionRecorder func(ctx context.Context, a event.Action)

// DefaultWaitTimeout bounds how long a gate waits for its own entry to come back from the topic.
const DefaultWaitTimeout = 5 * time.Second

// Gate holds tool calls for approval at a gateway. Every gateway replica runs one over the same
// [Store]; together they let an approved call through exactly once.
type Gate struct {
	store   *Store
	prod    Producer
	name    string // this gateway, in claims and the requester "gateway:<name>"
	baseURL string // of the approvals API, for the status URL given to clients
	wait    time.Duration
	actions ActionRecorder
	log     *slog.Logger
}

// GateConfig configures a [Gate].
type GateConfig struct {
	Store    *Store
	Producer Producer
	// Gateway names this replica (the gateway's observer name); claims carry it.
	Gateway string
	// APIURL is the base URL of the approvals HTTP API ("https://approvals.example.com"); the
	// answer to a held call points at APIURL + "/approvals/<id>". Empty: no URL is given.
	APIURL string
	// WaitTimeout bounds the wait for the gate's own entries to come back ([DefaultWaitTimeout]).
	WaitTimeout time.Duration
	// Actions, when set, records every request and claim as an action.
	Actions ActionRecorder
	Log     *slog.Logger
}

// NewGate returns a gate.
func NewGate(c GateConfig) (*Gate, error) {
	if c.Store == nil || c.Producer == nil {
		return nil, errors.New("approval gate: store and producer are required")
	}
	if !ValidName(c.Gateway) {
		return nil, fmt.Errorf("approval gate: gateway name %q: use letters, digits, _ . @ : - (at most %d)", c.Gateway, maxNameLen)
	}
	if c.WaitTimeout <= 0 {
		c.WaitTimeout = DefaultWaitTimeout
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return &Gate{store: c.Store, prod: c.Producer, name: c.Gateway, baseURL: strings.TrimRight(c.APIURL, "/"),
		wait: c.WaitTimeout, actions: c.Actions, log: c.Log}, nil
}

// Store is the store the gate decides on.
func (g *Gate) Store() *Store { return g.store }

// Hold is a tools/call a policy rule holds for approval.
type Hold struct {
	Tenant    string
	Principal event.Principal
	Server    string
	Tool      string
	// Arguments as the client sent them; their canonical hash binds the approval.
	Arguments json.RawMessage
	// MaskedArguments are shown to the approvers (the audit event's masked form).
	MaskedArguments string
	// Rule is the policy rule demanding approval, with its terms.
	Rule      string
	Approvers []string
	Required  int
	Timeout   time.Duration
	OnTimeout Decision
}

// Outcome is what a gateway does with a held call.
type Outcome int

const (
	// Forward: the call is approved and this gateway's claim won; forward it, once.
	Forward Outcome = iota + 1
	// Wait: the call waits for approval (a request exists or was just made).
	Wait
	// Refuse: denied, expired, used by another claim, or not approvable (bad arguments).
	Refuse
	// Unavailable: the approvals topic could not be written or read back in time; fail closed.
	Unavailable
)

// Verdict is a gate's answer for one held call.
type Verdict struct {
	Outcome Outcome
	// Status is the request's status (zero for a call refused before any request).
	Status Status
	// Message is for the client: what happened and what to do.
	Message string
	// URL is where the request's status can be read, "" when the gate has no API URL.
	URL string
}

// Check decides a held call. The newest request for the same call ([CallKey]) under the same
// terms decides: pending → Wait; approved → claim it, Forward if this claim is the first in the
// log, Refuse otherwise; denied or expired → Refuse with its reason for one timeout after it
// ended, after which the call may ask again; consumed or none → a new request, Wait. Kafka
// failures give Unavailable: a held call is never forwarded unless its claim is known to have won.
func (g *Gate) Check(ctx context.Context, h Hold) Verdict {
	argsHash, err := ArgsHash(h.Arguments)
	if err != nil {
		return Verdict{Outcome: Refuse, Message: "call cannot be approved: " + err.Error()}
	}
	call := &Call{Subject: h.Principal.Subject, ClientID: h.Principal.ClientID, TokenID: h.Principal.TokenID,
		Server: h.Server, Tool: h.Tool, ArgsSHA256: argsHash, Arguments: clipArgs(h.MaskedArguments)}
	now := g.store.Now()
	if st, ok := g.store.LatestForCall(CallKey(h.Tenant, call, h.Rule)); ok && sameTerms(&st.Request, &h) {
		switch st.State {
		case Pending:
			return g.verdict(Wait, st, "approval pending")
		case Approved:
			return g.claim(ctx, st)
		case Denied, Expired:
			if now.Before(st.EndedAt.Add(h.Timeout)) {
				return g.verdict(Refuse, st, "approval "+string(st.State))
			}
		}
	}
	return g.request(ctx, h, call, now)
}

func sameTerms(r *Request, h *Hold) bool {
	return r.Required == h.Required && r.OnTimeout == h.OnTimeout && slices.Equal(r.Approvers, h.Approvers)
}

func clipArgs(s string) string {
	const max = 8 << 10
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

func (g *Gate) request(ctx context.Context, h Hold, call *Call, now time.Time) Verdict {
	onTimeout := h.OnTimeout
	if onTimeout == "" {
		onTimeout = Deny
	}
	r := &Request{ID: uuid.NewString(), Time: now.UTC(), Tenant: h.Tenant, Requester: "gateway:" + g.name,
		Rule: h.Rule, Reason: fmt.Sprintf("policy rule %s holds calls of %s/%s for approval", h.Rule, h.Server, h.Tool),
		Call: call, Approvers: h.Approvers, Required: h.Required, Deadline: now.Add(h.Timeout).UTC(), OnTimeout: onTimeout}
	key, value, err := EncodeRequest(r)
	if err != nil {
		return Verdict{Outcome: Refuse, Message: "call cannot be held for approval: " + err.Error()}
	}
	wctx, cancel := context.WithTimeout(ctx, g.wait)
	defer cancel()
	if err := g.prod.Produce(wctx, key, value); err != nil {
		g.log.Warn("writing approval request failed; call refused", "request", r.ID, "err", err)
		return Verdict{Outcome: Unavailable, Message: "approval service unavailable, call refused: cannot record the approval request"}
	}
	if err := g.store.Wait(wctx, func(s *Store) bool { return s.has(r.ID) }); err != nil {
		g.log.Warn("approval request not read back; call refused", "request", r.ID, "err", err)
		return Verdict{Outcome: Unavailable, Message: "approval service unavailable, call refused: the approval request was not confirmed"}
	}
	st, _ := g.store.Get(r.ID)
	g.record(ctx, st, "pending", st.Reason)
	return g.verdict(Wait, st, "approval required")
}

func (g *Gate) claim(ctx context.Context, st Status) Verdict {
	wctx, cancel := context.WithTimeout(ctx, g.wait)
	defer cancel()
	won, after, err := ClaimFirst(wctx, g.store, g.prod, st.Request.ID, g.name)
	if err != nil {
		// The claim may yet win; the approval is then used up without the call: never doubled.
		g.log.Warn("approval claim not confirmed; call refused", "request", st.Request.ID, "err", err)
		return Verdict{Outcome: Unavailable, Status: st, Message: "approval service unavailable, call refused: the claim was not confirmed"}
	}
	if !won {
		return g.verdict(Refuse, after, "approval already used")
	}
	g.record(ctx, after, "consumed", after.Reason)
	return Verdict{Outcome: Forward, Status: after, URL: g.url(after.Request.ID)}
}

func (g *Gate) url(id string) string {
	if g.baseURL == "" {
		return ""
	}
	return g.baseURL + "/approvals/" + id
}

func (g *Gate) verdict(o Outcome, st Status, what string) Verdict {
	v := Verdict{Outcome: o, Status: st, URL: g.url(st.Request.ID)}
	msg := fmt.Sprintf("%s (request %s): %s", what, st.Request.ID, st.Reason)
	switch o {
	case Wait:
		msg += "; approvers vote with `mcpwatch response approve " + st.Request.ID + "`, then retry the same call"
		if v.URL != "" {
			msg += "; status at " + v.URL
		}
	case Refuse:
		if st.State == Consumed {
			msg += "; retry the call to ask for a new approval"
		}
	}
	v.Message = msg
	return v
}

func (g *Gate) record(ctx context.Context, st Status, status, reason string) {
	if g.actions == nil {
		return
	}
	g.actions(ctx, ActionOf(st, "gateway:"+g.name, status, reason))
}

// ActionOf is the audit action for one step of request st: status is pending, approved, denied,
// expired or consumed; actor who took the step ("gateway:<name>", "operator:<approver>").
// Its id is derived from the request, the actor and the status, so a step recorded twice (a
// restart, two API replicas) has one id.
func ActionOf(st Status, actor, status, reason string) event.Action {
	r := &st.Request
	a := event.Action{
		Schema: event.SchemaVersion, ID: uuid.NewSHA1(uuid.NameSpaceOID, []byte(r.ID+"|"+actor+"|"+status)).String(),
		Time: time.Now().UTC(), Tenant: r.Tenant, Kind: event.ActionApproval, Target: "approval:" + r.ID,
		Status: status, Actor: actor, Reason: reason,
		Detail: fmt.Sprintf("rule %s; %d of %d required approvals from [%s]; deadline %s", r.Rule, len(st.Approvals), r.Required,
			joinNames(r.Approvers), r.Deadline.UTC().Format(time.RFC3339)),
	}
	if r.Call != nil {
		a.Subject = r.Call.Subject
		a.Detail = fmt.Sprintf("tools/call %s/%s args_sha256=%s; %s", r.Call.Server, r.Call.Tool, r.Call.ArgsSHA256, a.Detail)
	}
	if r.Action != nil {
		a.Subject, a.FindingID, a.Playbook, a.Scope = r.Action.Subject, r.Action.FindingID, r.Action.Playbook, r.Action.Scope
	}
	return a
}

// NewActionRequest builds the request for a playbook action held for approval (the respond
// stage encodes it with [EncodeRequest] and writes it to the approvals topic). now is the
// request's time; the deadline is now + timeout; onTimeout "" means [Deny].
func NewActionRequest(tenant, requester, rule, reason string, action PlaybookAction, approvers []string, required int,
	now time.Time, timeout time.Duration, onTimeout Decision) *Request {
	if onTimeout == "" {
		onTimeout = Deny
	}
	return &Request{ID: uuid.NewString(), Time: now.UTC(), Tenant: tenant, Requester: requester, Rule: rule, Reason: reason,
		Action: &action, Approvers: slices.Clone(approvers), Required: required, Deadline: now.Add(timeout).UTC(), OnTimeout: onTimeout}
}

// WriteRequest encodes r and writes it with p: how a playbook puts an action up for approval.
func WriteRequest(ctx context.Context, p Producer, r *Request) error {
	key, value, err := EncodeRequest(r)
	if err != nil {
		return err
	}
	return p.Produce(ctx, key, value)
}
