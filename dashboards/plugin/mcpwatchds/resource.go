package mcpwatchds

import (
	"encoding/json"
	"errors"
	"fmt"
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
	return mux
}

// operator returns the Grafana user allowed to act, or an HTTP status and why not. The role is
// the one Grafana puts in the request's plugin context; a request without a user is refused.
func (d *Datasource) operator(r *http.Request) (string, int, error) {
	u := backend.UserFromContext(r.Context())
	if u == nil || u.Login == "" {
		return "", http.StatusUnauthorized, errors.New("no Grafana user in the request")
	}
	if roleRank[u.Role] < roleRank[d.settings.OperatorRole] {
		return "", http.StatusForbidden, fmt.Errorf("user %s has role %q; lifting controls needs %s", u.Login, u.Role, d.settings.OperatorRole)
	}
	if d.settings.KafkaBrokers == "" {
		return "", http.StatusNotImplemented, errors.New("operator actions are off: the datasource has no kafkaBrokers")
	}
	return "grafana:" + u.Login, 0, nil
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

// approvals lists approval requests (?state= as the approvals API takes it; default pending) to
// any signed-in Grafana user. It only reads: a vote must be signed with the approver's own
// Ed25519 key, which the plugin does not hold, so votes are cast with `mcpwatch response approve`.
func (d *Datasource) approvals(w http.ResponseWriter, r *http.Request) {
	if u := backend.UserFromContext(r.Context()); u == nil || u.Login == "" {
		httpError(w, http.StatusUnauthorized, errors.New("no Grafana user in the request"))
		return
	}
	if d.settings.ApprovalsURL == "" {
		httpError(w, http.StatusNotImplemented, errors.New("approvals are off: the datasource has no approvalsUrl"))
		return
	}
	list, err := (&approval.Client{BaseURL: d.settings.ApprovalsURL}).List(r.Context(), r.URL.Query().Get("state"))
	if err != nil {
		httpError(w, http.StatusBadGateway, err)
		return
	}
	out := make([]approval.Status, 0, len(list))
	for _, v := range list {
		out = append(out, v.Status)
	}
	writeJSON(w, http.StatusOK, out)
}

func httpError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
