package mcpwatchds

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/approval"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/response/ops"
)

// LiftRequest is the body of POST /lift: the control's key as `mcpwatch response list` prints it,
// and why.
type LiftRequest struct {
	Key       string `json:"key"`
	Reason    string `json:"reason"`
	FindingID string `json:"findingId,omitempty"`
}

// LiftResponse lists the action records written.
type LiftResponse struct {
	Actions []*event.Action `json:"actions"`
}

// kafkaOpts are appended to the operator client's Kafka options (tests lower metadata age).
var kafkaOpts []kgo.Opt

func (d *Datasource) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /lift", d.lift)
	mux.HandleFunc("GET /controls", d.controls)
	mux.HandleFunc("GET /approvals", d.approvals)
	mux.HandleFunc("GET /approvals/{id}", d.approvalRequest)
	mux.HandleFunc("POST /approvals/{id}/votes", d.vote)
	return mux
}

// privileged returns the login of the Grafana user if its role is at least the datasource's
// operatorRole, or an HTTP status and why not (what names the act, for the message). The role is
// the one Grafana puts in the request's plugin context; a request without a user is refused.
func (d *Datasource) privileged(r *http.Request, what string) (string, int, error) {
	u := backend.UserFromContext(r.Context())
	if u == nil || u.Login == "" {
		return "", http.StatusUnauthorized, errors.New("no Grafana user in the request")
	}
	if roleRank[u.Role] < roleRank[d.settings.OperatorRole] {
		return "", http.StatusForbidden, fmt.Errorf("user %s has role %q; %s needs %s", u.Login, u.Role, what, d.settings.OperatorRole)
	}
	return u.Login, 0, nil
}

// operator returns the Grafana user allowed to lift controls ("grafana:<login>"), or an HTTP
// status and why not.
func (d *Datasource) operator(r *http.Request) (string, int, error) {
	login, status, err := d.privileged(r, "lifting controls")
	if err != nil {
		return "", status, err
	}
	if d.settings.KafkaBrokers == "" {
		return "", http.StatusNotImplemented, errors.New("operator actions are off: the datasource has no kafkaBrokers")
	}
	return "grafana:" + login, 0, nil
}

func (d *Datasource) client() *ops.Client {
	return ops.NewClient(kafkaio.Config{Brokers: brokers(d.settings.KafkaBrokers), ClientID: "mcpwatch-grafana"},
		event.TopicNames(d.settings.TopicPrefix), slog.Default(), kafkaOpts...)
}

// lift ends one control at every gateway and records the lift as an action (actor
// operator:grafana:<login>), which the ledger stage then signs into the audit trail.
func (d *Datasource) lift(w http.ResponseWriter, r *http.Request) {
	op, status, err := d.operator(r)
	if err != nil {
		httpError(w, status, err)
		return
	}
	var req LiftRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, fmt.Errorf("body: %w", err))
		return
	}
	if strings.TrimSpace(req.Key) == "" {
		httpError(w, http.StatusBadRequest, errors.New("key: which control to lift (`mcpwatch response list` prints the keys)"))
		return
	}
	l := ops.Lift{Operator: op, Reason: req.Reason, FindingID: req.FindingID}
	if _, err := ops.PlanLift(l, event.Control{}, time.Now()); err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	c := d.client()
	cs, err := c.Controls(r.Context())
	if err != nil {
		httpError(w, http.StatusBadGateway, err)
		return
	}
	sel, err := ops.Select(cs, req.Key, "", "", "")
	if err != nil {
		httpError(w, http.StatusNotFound, err)
		return
	}
	acts, err := c.Lift(r.Context(), l, sel)
	if err != nil {
		httpError(w, http.StatusBadGateway, err)
		return
	}
	slog.Info("control lifted from Grafana", "operator", op, "key", req.Key, "actions", len(acts))
	writeJSON(w, http.StatusOK, LiftResponse{Actions: acts})
}

// controls lists the controls in force; any signed-in Grafana user may read them.
func (d *Datasource) controls(w http.ResponseWriter, r *http.Request) {
	if u := backend.UserFromContext(r.Context()); u == nil || u.Login == "" {
		httpError(w, http.StatusUnauthorized, errors.New("no Grafana user in the request"))
		return
	}
	if d.settings.KafkaBrokers == "" {
		httpError(w, http.StatusNotImplemented, errors.New("operator actions are off: the datasource has no kafkaBrokers"))
		return
	}
	cs, err := d.client().Controls(r.Context())
	if err != nil {
		httpError(w, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, http.StatusOK, ops.Rows(cs, time.Now(), false))
}

// approvalsOn answers 401 for a request without a Grafana user and 501 for a datasource without
// approvalsUrl, and says whether the request may go on.
func (d *Datasource) approvalsOn(w http.ResponseWriter, r *http.Request) bool {
	if u := backend.UserFromContext(r.Context()); u == nil || u.Login == "" {
		httpError(w, http.StatusUnauthorized, errors.New("no Grafana user in the request"))
		return false
	}
	if d.settings.ApprovalsURL == "" {
		httpError(w, http.StatusNotImplemented, errors.New("approvals are off: the datasource has no approvalsUrl"))
		return false
	}
	return true
}

func (d *Datasource) approvalsClient() *approval.Client { return d.approvalsAPI }

// apiError relays an error of the approvals API: its own status and reason when it answered,
// 502 when it could not be reached or its answer was wrong.
func apiError(w http.ResponseWriter, err error) {
	var ae *approval.APIError
	if errors.As(err, &ae) && ae.Code >= 400 && ae.Code <= 599 {
		if ae.Reason == "" {
			ae.Reason = "approvals API: " + ae.Status
		}
		httpError(w, ae.Code, errors.New(ae.Reason))
		return
	}
	httpError(w, http.StatusBadGateway, err)
}

// approvals lists approval requests (?state= as the approvals API takes it; default pending) to
// any signed-in Grafana user.
func (d *Datasource) approvals(w http.ResponseWriter, r *http.Request) {
	if !d.approvalsOn(w, r) {
		return
	}
	list, err := d.approvalsClient().List(r.Context(), r.URL.Query().Get("state"))
	if err != nil {
		apiError(w, err)
		return
	}
	out := make([]approval.Status, 0, len(list))
	for _, v := range list {
		out = append(out, v.Status)
	}
	writeJSON(w, http.StatusOK, out)
}

// approvalRequest returns one request as the approvals API shows it (status, record, hash) to any
// signed-in Grafana user: the browser recomputes the hash from the record before it signs.
func (d *Datasource) approvalRequest(w http.ResponseWriter, r *http.Request) {
	if !d.approvalsOn(w, r) {
		return
	}
	view, err := d.approvalsClient().Get(r.Context(), r.PathValue("id"))
	if err != nil {
		apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, view)
}

// maxVoteBody bounds a vote's body, as the approvals API does.
const maxVoteBody = 16 << 10

// vote relays a vote signed in the approver's browser to the approvals API, unchanged. The
// Grafana user must hold at least operatorRole and may only post votes of its own approver id
// (ApproverLogins, default the login) on the request named in the path. The plugin holds no
// approver key and checks no signature; the API verifies it against its keyring, writes the vote
// to the approvals topic and records it as an action, as it does for a vote from the CLI. The
// API's answer, refusals included, is passed back with its status.
func (d *Datasource) vote(w http.ResponseWriter, r *http.Request) {
	login, status, err := d.privileged(r, "voting on approvals")
	if err != nil {
		httpError(w, status, err)
		return
	}
	if !d.approvalsOn(w, r) {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxVoteBody))
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("vote body: over %d bytes", maxVoteBody))
		return
	}
	v, err := approval.DecodeVote(body)
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	id := r.PathValue("id")
	if v.RequestID != id {
		httpError(w, http.StatusBadRequest, fmt.Errorf("vote is for request %q, posted to %q", v.RequestID, id))
		return
	}
	approver, ok := d.settings.approverOf(login)
	if !ok {
		httpError(w, http.StatusForbidden, fmt.Errorf("user %s votes as no approver: approver id %s is mapped from another login in approverLogins", login, login))
		return
	}
	if v.Approver != approver {
		slog.Warn("vote for another approver refused", "login", login, "approver", approver, "vote_approver", v.Approver, "request", id)
		httpError(w, http.StatusForbidden, fmt.Errorf("user %s votes as approver %s, not %s (approverLogins in the datasource maps logins to approvers)", login, approver, v.Approver))
		return
	}
	after, err := d.approvalsClient().PostVote(r.Context(), &v)
	if err != nil {
		slog.Info("vote from Grafana refused", "login", login, "approver", v.Approver, "request", id, "decision", v.Decision, "err", err)
		apiError(w, err)
		return
	}
	slog.Info("vote from Grafana recorded", "login", login, "approver", v.Approver, "request", id, "decision", v.Decision, "state", after.State)
	writeJSON(w, http.StatusCreated, after)
}

func httpError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
