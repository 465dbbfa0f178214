// Package ops carries out an operator's response commands (`mcpwatch response list|revoke|
// quarantine|lift`): it writes controls and their tombstones to the compacted control topic that
// every gateway follows, and records each command as an [event.Action] on the actions topic —
// who ("operator:<id>"), why (a reason is required), which finding — for the signed audit trail.
//
// A command is planned without I/O ([PlanControl], [PlanLift]) and then carried out by a [Client],
// which publishes the control (or tombstone) first and the action record second, each
// acknowledged by Kafka: an action record never claims a control that Kafka did not take.
package ops

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/mcpwatch/mcpwatch/event"
)

// DefaultFor is how long an operator's revocation or quarantine lasts unless a duration or
// permanence is given: the playbooks' default expiry, so nothing is permanent by accident.
const DefaultFor = time.Hour

// Action statuses an operator command records.
const (
	StatusSucceeded = "succeeded"
)

// ErrNoReason is returned for a command without a reason: every operator action must say why.
var ErrNoReason = errors.New("a reason is required (--reason \"...\"): it goes to the audit trail with your name")

// ErrNotFound is returned by lift when no control is stored under the key or for the target.
var ErrNotFound = errors.New("no such control")

// Request is an operator's revoke or quarantine.
type Request struct {
	Operator  string // who, without the "operator:" prefix
	Reason    string
	FindingID string // the finding that prompted it, if any
	Tenant    string // "" applies to every tenant
	Kind      event.ControlKind
	Scope     event.ControlScope
	Value     string
	// For is how long the control lasts; 0 means [DefaultFor]. Permanent overrides it.
	For       time.Duration
	Permanent bool
}

// scopesOf are the scopes each kind an operator may issue applies to.
var scopesOf = map[event.ControlKind][]event.ControlScope{
	event.ControlRevoke:     {event.ScopeSubject, event.ScopeClient, event.ScopeToken},
	event.ControlQuarantine: {event.ScopeSandbox, event.ScopeServer, event.ScopeTool},
	event.ControlStepUp:     {event.ScopeSubject, event.ScopeClient, event.ScopeToken},
}

// Validate reports what is missing or wrong, every problem at once, in words an operator can act on.
func (r Request) Validate() error {
	var errs []error
	if strings.TrimSpace(r.Reason) == "" {
		errs = append(errs, ErrNoReason)
	}
	if err := checkOperator(r.Operator); err != nil {
		errs = append(errs, err)
	}
	scopes, ok := scopesOf[r.Kind]
	switch {
	case !ok:
		errs = append(errs, fmt.Errorf("kind %q: want revoke, quarantine or step_up", r.Kind))
	case !contains(scopes, r.Scope):
		errs = append(errs, fmt.Errorf("a %s applies to one of %s, not %q", r.Kind, joinScopes(scopes), r.Scope))
	}
	if strings.TrimSpace(r.Value) == "" {
		errs = append(errs, fmt.Errorf("no %s given: name what to %s", r.Scope, r.Kind))
	}
	if strings.Contains(r.Tenant, "/") {
		errs = append(errs, fmt.Errorf("tenant %q: must not contain '/'", r.Tenant))
	}
	if r.For < 0 {
		errs = append(errs, fmt.Errorf("--for %s: must be positive", r.For))
	}
	if r.Permanent && r.For > 0 {
		errs = append(errs, errors.New("--for and --permanent are exclusive"))
	}
	return errors.Join(errs...)
}

func checkOperator(op string) error {
	if strings.TrimSpace(op) == "" {
		return errors.New("no operator: give --operator (default: $USER, which is unset)")
	}
	if strings.ContainsAny(op, "\n\r\t") {
		return fmt.Errorf("operator %q: must not contain control characters", op)
	}
	return nil
}

func contains(list []event.ControlScope, s event.ControlScope) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func joinScopes(list []event.ControlScope) string {
	s := make([]string, len(list))
	for i, x := range list {
		s[i] = string(x)
	}
	return strings.Join(s, ", ")
}

// Actor is how an operator is named in controls and action records.
func Actor(operator string) string { return "operator:" + operator }

// PlanControl returns the control r asks for and the action record that says who issued it and
// why. The control expires r.For (default [DefaultFor]) after now unless r.Permanent.
func PlanControl(r Request, now time.Time) (*event.Control, *event.Action, error) {
	if err := r.Validate(); err != nil {
		return nil, nil, err
	}
	now = now.UTC()
	var exp *time.Time
	if !r.Permanent {
		d := r.For
		if d == 0 {
			d = DefaultFor
		}
		e := now.Add(d)
		exp = &e
	}
	ctl := &event.Control{
		ID: event.NewID(), Time: now, Kind: r.Kind, Scope: r.Scope, Tenant: r.Tenant,
		Value: strings.TrimSpace(r.Value), Reason: strings.TrimSpace(r.Reason), FindingID: r.FindingID,
		Actor: Actor(r.Operator), Expires: exp,
	}
	a := &event.Action{
		ID: derivedID(ctl.ID, "action"), Time: now, Tenant: r.Tenant, FindingID: r.FindingID,
		Subject: subjectOf(ctl.Scope, ctl.Value), Kind: actionKind(r.Kind), Target: ctl.Key(),
		Status: StatusSucceeded, Attempts: 1, Scope: ctl.Scope, Actor: ctl.Actor, Reason: ctl.Reason,
		ControlID: ctl.ID, Expires: exp,
	}
	return ctl, a, nil
}

// Lift is an operator's lift of one stored control.
type Lift struct {
	Operator, Reason, FindingID string
}

// PlanLift returns the action record of lifting c (the caller writes the tombstone under
// c.Key()).
func PlanLift(l Lift, c event.Control, now time.Time) (*event.Action, error) {
	var errs []error
	if strings.TrimSpace(l.Reason) == "" {
		errs = append(errs, ErrNoReason)
	}
	if err := checkOperator(l.Operator); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	now = now.UTC()
	finding := l.FindingID
	if finding == "" {
		finding = c.FindingID
	}
	return &event.Action{
		ID: derivedID(c.ID, "lift/"+now.Format(time.RFC3339Nano)), Time: now, Tenant: c.Tenant,
		FindingID: finding, Subject: subjectOf(c.Scope, c.Value), Kind: event.ActionLift, Target: c.Key(),
		Status: StatusSucceeded, Attempts: 1, Scope: c.Scope, Actor: Actor(l.Operator),
		Reason: strings.TrimSpace(l.Reason), ControlID: c.ID,
		Detail: fmt.Sprintf("lifted %s of %s %q (%s by %s)", c.Kind, c.Scope, c.Value, c.Reason, orUnknown(c.Actor)),
	}, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown actor"
	}
	return s
}

// ParseKey splits a control key ([event.Control.Key]: kind/scope/tenant/value; the value may
// hold '/').
func ParseKey(key string) (kind event.ControlKind, scope event.ControlScope, tenant, value string, err error) {
	parts := strings.SplitN(key, "/", 4)
	if len(parts) != 4 || parts[0] == "" || parts[1] == "" || parts[3] == "" {
		return "", "", "", "", fmt.Errorf("control key %q: want kind/scope/tenant/value, as `mcpwatch response list` prints", key)
	}
	return event.ControlKind(parts[0]), event.ControlScope(parts[1]), parts[2], parts[3], nil
}

func actionKind(k event.ControlKind) event.ActionKind {
	switch k {
	case event.ControlRevoke:
		return event.ActionRevoke
	case event.ControlQuarantine:
		return event.ActionQuarantine
	case event.ControlStepUp:
		return event.ActionStepUp
	}
	return event.ActionKind(k)
}

// subjectOf is the action's subject: the principal a control names, empty for servers, tools and
// sandboxes.
func subjectOf(scope event.ControlScope, value string) string {
	if scope == event.ScopeSubject || scope == event.ScopeClient {
		return value
	}
	return ""
}

// ActionKey is the actions-topic record key of a: the principal's key when it names one (so it
// shares the partition of the principal's other records), else tenant and target.
func ActionKey(a *event.Action) string {
	if a.Subject != "" {
		return event.PrincipalKey(a.Tenant, event.Principal{Subject: a.Subject})
	}
	return a.Tenant + "/" + a.Target
}

// idNamespace scopes the ids of operator action records; it never changes.
var idNamespace = uuid.MustParse("3c1f4d52-8c2e-4b7a-9a51-6f0d2b7e9e10")

func derivedID(base, what string) string {
	return uuid.NewSHA1(idNamespace, []byte(base+"\x00"+what)).String()
}
