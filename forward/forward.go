// Package forward is the SIEM forwarding stage: it reads normalized events (and, if asked,
// findings) from Kafka and sends their CEF lines to a syslog collector (see forward/syslog).
//
// Delivery is at-least-once up to the collector's socket. A batch's offsets are committed only
// after every frame of the batch was written to a connection the collector had not closed; any
// failure before that (connection refused or reset, TLS error, write timeout) reconnects and
// sends the whole batch again, so the collector may see duplicates (each message carries the
// event id) but never a gap. Syslog over TCP has no acknowledgement: what the collector's kernel
// accepted but the collector itself lost (a crash before it read or queued the bytes) is beyond
// this guarantee; collectors should queue to disk.
package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/forward/syslog"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// Sender delivers a batch of framed messages; [syslog.Client] is one.
type Sender interface {
	Send(ctx context.Context, frames []byte) error
}

// FindingRenderer renders a finding as a CEF line.
type FindingRenderer func(event.Finding) string

// HandlerConfig configures the stage's handler.
type HandlerConfig struct {
	Topics event.Topics
	// Formatter renders the syslog messages. Required.
	Formatter *syslog.Formatter
	// FindingCEF, when set, makes the stage forward findings too, rendered by it.
	FindingCEF FindingRenderer
	// MinSeverity drops events and findings below this CEF severity (0–10) before sending.
	MinSeverity int
	// Sources, when not empty, forwards only events from these sources (findings always pass).
	Sources []event.Source
}

// Validate reports a config that cannot work.
func (c HandlerConfig) Validate() error {
	if c.Formatter == nil {
		return errors.New("forward: no syslog formatter")
	}
	if c.Topics.Events == "" {
		return errors.New("forward: no events topic")
	}
	if c.MinSeverity < 0 || c.MinSeverity > 10 {
		return fmt.Errorf("forward: minimum severity %d: want 0-10", c.MinSeverity)
	}
	for _, s := range c.Sources {
		switch s {
		case event.SourceMCP, event.SourceOTel, event.SourceKernel:
		default:
			return fmt.Errorf("forward: source %q: want %s, %s or %s", s, event.SourceMCP, event.SourceOTel, event.SourceKernel)
		}
	}
	return nil
}

// InputTopics are the topics the stage consumes.
func (c HandlerConfig) InputTopics() []string {
	if c.FindingCEF != nil {
		return []string{c.Topics.Events, c.Topics.Findings}
	}
	return []string{c.Topics.Events}
}

// Handler is the forwarding stage's [kafkaio.Handler]. Records that cannot be sent (undecodable,
// not normalized, a CEF line that is not sendable or too large) are dead-lettered with the
// reason; records below the filters are skipped and committed; everything else is sent as one
// write per batch. A Send error is returned, so the stage retries the batch uncommitted.
type Handler struct {
	cfg  HandlerConfig
	s    Sender
	log  *slog.Logger
	m    *metrics
	srcs map[event.Source]bool
}

// NewHandler validates cfg. reg and log may be nil.
func NewHandler(cfg HandlerConfig, s Sender, reg prometheus.Registerer, log *slog.Logger) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if s == nil {
		return nil, errors.New("forward: no sender")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, s: s, log: log, m: newMetrics(reg)}
	if len(cfg.Sources) > 0 {
		h.srcs = map[event.Source]bool{}
		for _, src := range cfg.Sources {
			h.srcs[src] = true
		}
	}
	return h, nil
}

// Handle formats the batch, sends it and returns the dead letters.
func (h *Handler) Handle(ctx context.Context, recs []*kgo.Record) (kafkaio.Result, error) {
	var (
		res    kafkaio.Result
		batch  []byte
		msg    []byte
		counts = map[string]int{}
	)
	for _, r := range recs {
		m, kind, skip, err := h.message(r)
		if err == nil && !skip {
			msg, err = h.cfg.Formatter.Append(msg[:0], m)
		}
		switch {
		case err != nil:
			res.Dead = append(res.Dead, kafkaio.DeadLetter{Record: r, Reason: err})
		case skip:
			h.m.filtered.Inc()
		default:
			batch = syslog.AppendFrame(batch, msg)
			counts[kind]++
		}
	}
	if err := h.s.Send(ctx, batch); err != nil {
		return kafkaio.Result{}, fmt.Errorf("forward %d messages: %w", len(recs)-len(res.Dead), err)
	}
	for kind, n := range counts {
		h.m.sent.WithLabelValues(kind).Add(float64(n))
	}
	return res, nil
}

// message turns a record into a syslog message, or says to skip it, or why it cannot be sent.
func (h *Handler) message(r *kgo.Record) (m syslog.Message, kind string, skip bool, err error) {
	where := fmt.Sprintf("%s/%d@%d", r.Topic, r.Partition, r.Offset)
	switch {
	case r.Topic == h.cfg.Topics.Events:
		var e event.Event
		if err := event.Decode(r.Value, &e); err != nil {
			return m, "", false, fmt.Errorf("decode event at %s: %w", where, err)
		}
		if e.Severity < h.cfg.MinSeverity || (h.srcs != nil && !h.srcs[e.Source]) {
			return m, "", true, nil
		}
		if e.Normalized == nil || e.Normalized.CEF == "" {
			return m, "", false, fmt.Errorf("event %s at %s has no CEF line (not normalized by the process stage)", e.ID, where)
		}
		return syslog.Message{Time: e.Time, Severity: e.Severity, MsgID: e.Normalized.Signature, ID: e.ID,
			CEF: e.Normalized.CEF}, "event", false, nil
	case r.Topic == h.cfg.Topics.Findings && h.cfg.FindingCEF != nil:
		var f event.Finding
		if err := event.Decode(r.Value, &f); err != nil {
			return m, "", false, fmt.Errorf("decode finding at %s: %w", where, err)
		}
		line := h.cfg.FindingCEF(f)
		if line == "" {
			return m, "", false, fmt.Errorf("finding %s at %s renders no CEF line", f.ID, where)
		}
		// The renderer decides the finding's CEF severity (from its score); the syslog severity
		// and the filter follow the line, so the two never disagree.
		sig, sev, ok := Header(line)
		if !ok {
			sev = f.Severity
		}
		if sev < h.cfg.MinSeverity {
			return m, "", true, nil
		}
		return syslog.Message{Time: f.Time, Severity: sev, MsgID: sig, ID: f.ID, CEF: line}, "finding", false, nil
	}
	return m, "", false, fmt.Errorf("record at %s: topic is not forwarded", where)
}

// Header returns the Signature ID (fifth header field) and the severity (seventh) of a CEF
// line, honouring escaped pipes and backslashes. ok is false when the header is incomplete or
// the severity is not a number 0–10.
func Header(cef string) (signature string, severity int, ok bool) {
	var pipes []int // positions of the unescaped pipes that end the header fields
	for i := 0; i < len(cef) && len(pipes) < 7; i++ {
		switch cef[i] {
		case '\\':
			i++
		case '|':
			pipes = append(pipes, i)
		}
	}
	if len(pipes) < 7 {
		return "", 0, false
	}
	signature = unescapeHeader(cef[pipes[3]+1 : pipes[4]])
	sev, err := strconv.Atoi(cef[pipes[5]+1 : pipes[6]])
	if err != nil || sev < 0 || sev > 10 {
		return signature, 0, false
	}
	return signature, sev, true
}

func unescapeHeader(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// StageName names the stage in logs, metrics, dead-letter headers and its consumer group.
const StageName = "forward"

// StageOptions are the Kafka side of the stage.
type StageOptions struct {
	Group   string // consumer group; default "mcpwatch-forward"
	MaxPoll int    // records per batch, which bounds a batch's memory to MaxPoll × the message limit; default 1000
	FromEnd bool   // a new group starts at the end of the topics instead of the start
}

// NewStage builds the forwarding stage: a consumer group over cfg's input topics whose batches
// h sends, committing only after they were sent. Dead letters go to cfg.Topics.DeadLetter.
func NewStage(kc kafkaio.Config, o StageOptions, h *Handler, reg prometheus.Registerer, log *slog.Logger) (*kafkaio.Stage, error) {
	if o.MaxPoll <= 0 {
		o.MaxPoll = 1000
	}
	return kafkaio.NewStage(kc, kafkaio.StageConfig{Name: StageName, Group: o.Group, Topics: h.cfg.InputTopics(),
		MaxPoll: o.MaxPoll, FromEnd: o.FromEnd, DeadLetterTopic: h.cfg.Topics.DeadLetter}, h, reg, log)
}

type metrics struct {
	sent     *prometheus.CounterVec
	filtered prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_forward_messages_total",
			Help: "Messages written to the syslog collector, by kind (event, finding); resent batches count again."}, []string{"kind"}),
		filtered: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_forward_filtered_total",
			Help: "Records skipped by the severity or source filter."}),
	}
	if reg != nil {
		reg.MustRegister(m.sent, m.filtered)
	}
	return m
}

// ParseSources reads a comma-separated source list ("mcp,kernel").
func ParseSources(s string) ([]event.Source, error) {
	var out []event.Source
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		src := event.Source(p)
		if !slices.Contains([]event.Source{event.SourceMCP, event.SourceOTel, event.SourceKernel}, src) {
			return nil, fmt.Errorf("source %q: want %s, %s or %s", p, event.SourceMCP, event.SourceOTel, event.SourceKernel)
		}
		out = append(out, src)
	}
	return out, nil
}
