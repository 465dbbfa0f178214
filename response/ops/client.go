package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/control"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// Client carries out operator commands against one deployment's topics.
type Client struct {
	kcfg   kafkaio.Config
	topics event.Topics
	log    *slog.Logger
	opts   []kgo.Opt
}

// NewClient returns a client for the topics in names. opts are appended to every Kafka client's
// options (tests lower kgo.MetadataMinAge).
func NewClient(kcfg kafkaio.Config, names event.Topics, log *slog.Logger, opts ...kgo.Opt) *Client {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{kcfg: kcfg, topics: names, log: log, opts: opts}
}

// Issue publishes ctl, then its action record a, each acknowledged by Kafka. When the control is
// taken and the record is not, the error says so: the control is in force but unrecorded.
func (c *Client) Issue(ctx context.Context, ctl *event.Control, a *event.Action) error {
	cr, err := kafkaio.RecordOf(c.topics.Control, ctl.Key(), ctl)
	if err != nil {
		return fmt.Errorf("encode control: %w", err)
	}
	return c.publish(ctx, cr, a, "control "+ctl.Key())
}

// Lift writes the tombstone of every control in cs (lifting it at every gateway) and records
// each lift with the action record from [PlanLift].
func (c *Client) Lift(ctx context.Context, l Lift, cs []event.Control) ([]*event.Action, error) {
	var out []*event.Action
	for _, ctl := range cs {
		a, err := PlanLift(l, ctl, time.Now())
		if err != nil {
			return out, err
		}
		tomb := &kgo.Record{Topic: c.topics.Control, Key: []byte(ctl.Key())}
		if err := c.publish(ctx, tomb, a, "tombstone of "+ctl.Key()); err != nil {
			return out, err
		}
		out = append(out, a)
	}
	return out, nil
}

func (c *Client) publish(ctx context.Context, first *kgo.Record, a *event.Action, what string) error {
	cl, err := kafkaio.NewClient(c.kcfg, c.opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, first).FirstErr(); err != nil {
		return fmt.Errorf("publish %s to %s: %w (nothing changed; run the command again)", what, c.topics.Control, err)
	}
	ar, err := kafkaio.RecordOf(c.topics.Actions, ActionKey(a), a)
	if err == nil {
		err = cl.ProduceSync(ctx, ar).FirstErr()
	}
	if err != nil {
		return fmt.Errorf("%s is published, but its action record %s was not written to %s: %w", what, a.ID, c.topics.Actions, err)
	}
	c.log.Info("operator action", "kind", a.Kind, "target", a.Target, "actor", a.Actor, "reason", a.Reason,
		"finding", a.FindingID, "action", a.ID)
	return nil
}

// Controls reads the control topic to its end and returns every stored control — those in force
// and those expired but not yet tombstoned — sorted by key.
func (c *Client) Controls(ctx context.Context) ([]event.Control, error) {
	st := control.NewStore()
	f, err := control.NewFollower(c.kcfg, c.topics.Control, st, nil, c.log, c.opts...)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.Run(rctx) }()
	err = f.WaitReady(ctx)
	cancel()
	if rerr := <-done; err == nil && rerr != nil && rctx.Err() == nil {
		err = rerr
	}
	if err != nil {
		return nil, fmt.Errorf("read control topic %s: %w", c.topics.Control, err)
	}
	cs := st.Controls()
	slices.SortFunc(cs, func(a, b event.Control) int { return strings.Compare(a.Key(), b.Key()) })
	return cs, nil
}

// Select returns the controls of cs that key names, or (key empty) those on scope and value in
// tenant. It returns [ErrNotFound] when there is none.
func Select(cs []event.Control, key string, tenant string, scope event.ControlScope, value string) ([]event.Control, error) {
	var out []event.Control
	for _, c := range cs {
		if key != "" && c.Key() == key || key == "" && c.Scope == scope && c.Tenant == tenant && c.Value == value {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		what := key
		if key == "" {
			what = fmt.Sprintf("%s %q in tenant %q", scope, value, tenant)
		}
		return nil, fmt.Errorf("%w for %s: `mcpwatch response list --all` shows the stored controls", ErrNotFound, what)
	}
	return out, nil
}

// Row is one control as `list` shows it.
type Row struct {
	Key      string     `json:"key"`
	Kind     string     `json:"kind"`
	Scope    string     `json:"scope"`
	Tenant   string     `json:"tenant"`
	Value    string     `json:"value"`
	Actor    string     `json:"actor,omitempty"`
	Reason   string     `json:"reason"`
	Finding  string     `json:"finding_id,omitempty"`
	Issued   time.Time  `json:"time"`
	Expires  *time.Time `json:"expires,omitempty"`
	AgeS     float64    `json:"age_s"`
	InForce  bool       `json:"in_force"`
	ID       string     `json:"id"`
	Enforced string     `json:"enforced"` // "refuses calls", "step-up challenge", "planned"
}

// Rows are the controls in cs as rows at now: those in force, and the expired too when all.
func Rows(cs []event.Control, now time.Time, all bool) []Row {
	out := []Row{}
	for _, c := range cs {
		active := c.Active(now)
		if !active && !all {
			continue
		}
		out = append(out, Row{Key: c.Key(), Kind: string(c.Kind), Scope: string(c.Scope), Tenant: c.Tenant,
			Value: c.Value, Actor: c.Actor, Reason: c.Reason, Finding: c.FindingID, Issued: c.Time,
			Expires: c.Expires, AgeS: now.Sub(c.Time).Seconds(), InForce: active, ID: c.ID, Enforced: enforced(c)})
	}
	return out
}

func enforced(c event.Control) string {
	switch {
	case c.Refuses():
		return "refuses calls"
	case c.Kind == event.ControlStepUp:
		return "step-up challenge"
	case c.Kind == event.ControlBlockEgress:
		return "egress refused in the kernel (gateways with ebpf)"
	}
	return "unknown kind"
}

// WriteJSON writes rows as one JSON array.
func WriteJSON(w io.Writer, rows []Row) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rows)
}

// WriteTable writes rows as an aligned table; controls and reasons are the operator's words, so
// control characters are replaced before they reach the terminal.
func WriteTable(w io.Writer, rows []Row, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tKIND\tSCOPE\tVALUE\tACTOR\tREASON\tFINDING\tEXPIRES\tAGE")
	for _, r := range rows {
		exp := "never"
		if r.Expires != nil {
			exp = r.Expires.UTC().Format(time.RFC3339)
			if !r.InForce {
				exp += " (expired)"
			} else {
				exp += " (in " + r.Expires.Sub(now).Round(time.Second).String() + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", clean(r.Key), r.Kind, r.Scope, clean(r.Value),
			clean(dash(r.Actor)), clean(dash(r.Reason)), clean(dash(r.Finding)), exp,
			time.Duration(r.AgeS*float64(time.Second)).Round(time.Second))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
