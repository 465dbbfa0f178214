// Package source is what every MCP audit source is built from — the HTTP gateway and stdio wrap
// alike: the durable delivery of audit events to Kafka (a client, an optional disk spool that
// keeps events while Kafka is away), and the enforcement state followed from Kafka and files
// (revocations and quarantines from the control topic, live threat scores, the access policy,
// tool pins). Written once here, so that a revocation or a full spool means the same thing at
// every source.
package source

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/internal/control"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/pins"
	"github.com/mcpwatch/mcpwatch/internal/scores"
	"github.com/mcpwatch/mcpwatch/internal/spool"
	"github.com/mcpwatch/mcpwatch/policy"
)

// Config is the part of a source's configuration this package acts on.
type Config struct {
	Spool    Spool  `yaml:"spool"`
	Policy   Policy `yaml:"policy"`
	ToolPins Pins   `yaml:"tool_pins"`
}

// Spool keeps audit events on disk while Kafka is not acknowledging them, and replays them in
// order later.
type Spool struct {
	// Dir is the spool's directory; empty: no spool, events wait in memory and are dropped and
	// counted when Kafka stays away.
	Dir string `yaml:"dir"`
	// MaxBytes bounds the spool; when it is full, Full decides.
	MaxBytes int64 `yaml:"max_bytes"`
	// Sync is the fsync policy: always, interval (every 100ms) or none.
	Sync string `yaml:"sync"`
	// Full is fail_closed (refuse calls that cannot be audited) or fail_open (drop and count).
	Full string `yaml:"full"`
}

// Policy is the access policy file (YAML, default deny; see `mcpwatch policy check`).
type Policy struct {
	File   string        `yaml:"file"`
	Reload time.Duration `yaml:"reload"` // how often the file is checked for changes
	// None runs WITHOUT a policy (authentication and revocations only): an explicit choice a
	// gateway asks for, since a gateway without a policy lets every principal call every tool.
	None bool `yaml:"none"`
}

// Pins are the tool-definition pins (see `mcpwatch tools`).
type Pins struct {
	File   string        `yaml:"file"`
	Mode   string        `yaml:"mode"` // off, audit, tofu or strict
	Reload time.Duration `yaml:"reload"`
}

// DefaultConfig returns the defaults: no spool, policy and pins checked every 2s once set, pins
// on first use.
func DefaultConfig() Config {
	return Config{
		Spool:    Spool{MaxBytes: spool.DefaultMaxBytes, Sync: "interval", Full: string(mcp.FailClosed)},
		Policy:   Policy{Reload: 2 * time.Second},
		ToolPins: Pins{Mode: string(pins.TOFU), Reload: 2 * time.Second},
	}
}

// Validate reports settings that cannot work; errors name their field.
func (c Config) Validate() error {
	var errs []error
	if c.Spool.MaxBytes < 0 {
		errs = append(errs, component.Fieldf("spool.max_bytes", "must not be negative, got %d", c.Spool.MaxBytes))
	}
	if _, err := spool.ParseSyncPolicy(c.Spool.Sync); err != nil {
		errs = append(errs, component.Field("spool.sync", err))
	}
	if _, err := fullMode(c.Spool.Full); err != nil {
		errs = append(errs, component.Field("spool.full", err))
	}
	if c.Policy.File != "" && c.Policy.None {
		errs = append(errs, component.Fieldf("policy.none", "a policy file and none are exclusive"))
	}
	if c.Policy.Reload <= 0 {
		errs = append(errs, component.Fieldf("policy.reload", "must be positive, got %s", c.Policy.Reload))
	}
	mode, err := pins.ParseMode(c.ToolPins.Mode)
	if err != nil {
		errs = append(errs, component.Field("tool_pins.mode", err))
	} else if mode == pins.Strict && c.ToolPins.File == "" {
		errs = append(errs, component.Fieldf("tool_pins.file", "strict pinning needs a pin file"))
	}
	if c.ToolPins.Reload <= 0 {
		errs = append(errs, component.Fieldf("tool_pins.reload", "must be positive, got %s", c.ToolPins.Reload))
	}
	return errors.Join(errs...)
}

func fullMode(s string) (mcp.SpoolFullMode, error) {
	switch m := mcp.SpoolFullMode(s); m {
	case mcp.FailClosed, mcp.FailOpen:
		return m, nil
	}
	return "", fmt.Errorf("%q: want fail_closed or fail_open", s)
}

// Options are what differs between sources.
type Options struct {
	// FollowControl follows the control topic: revocations and quarantines.
	FollowControl bool
	// FollowScores follows the scores topic: the policy's risk.
	FollowScores bool
}

// Source is a source's delivery and enforcement state, open. Run keeps the state current; Close
// delivers or spools what is pending and releases everything.
type Source struct {
	// Publisher delivers audit events: to Kafka, through the spool when one is configured.
	Publisher mcp.Publisher
	// Actions delivers the source's own action records (sandbox quarantines applied and lifted)
	// to the actions topic, with the same guarantees: through a spool of their own (the
	// "actions" directory inside the spool directory) when one is configured.
	Actions mcp.ActionPublisher
	// Controls are the revocations and quarantines (empty unless FollowControl).
	Controls *control.Store
	// Policy is the access policy, nil without one; Pins the tool pins, nil without them.
	Policy *policy.Store
	Pins   *pins.Store

	set     component.Settings
	cfg     Config
	risk    *scores.Store
	control *kafkaio.Follower
	scores  *kafkaio.Follower
	flush   func(context.Context) error
	closes  []func()
}

// Open opens the policy and pin files (a broken file fails here, not at the first call), the
// Kafka client and spool, and prepares the followers; nothing is read from Kafka until Run.
func Open(set component.Settings, cfg Config, o Options) (_ *Source, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Source{set: set, cfg: cfg, Controls: control.NewStore(), risk: scores.NewStore()}
	defer func() {
		if err != nil {
			s.release()
		}
	}()
	if cfg.Policy.File != "" {
		ps, err := policy.NewStore(cfg.Policy.File, policy.WithLogger(set.Logger.With("part", "policy")))
		if err != nil {
			return nil, err
		}
		s.Policy = ps
		set.Logger.Info("policy loaded", "path", cfg.Policy.File, "rules", ps.Policy().Len())
	}
	if mode, _ := pins.ParseMode(cfg.ToolPins.Mode); cfg.ToolPins.File != "" && mode != pins.Off {
		ts, err := pins.Open(cfg.ToolPins.File, mode, set.Logger.With("part", "tool-pins"))
		if err != nil {
			return nil, err
		}
		s.Pins = ts
		set.Logger.Info("tool pins loaded", "path", cfg.ToolPins.File, "mode", mode)
	}
	if o.FollowControl {
		f, err := control.NewFollower(set.KafkaClient("control"), set.Topics.Control, s.Controls, set.Registerer, set.Logger)
		if err != nil {
			return nil, err
		}
		s.control = f
		s.closes = append(s.closes, f.Close)
	}
	if o.FollowScores {
		f, err := scores.NewFollower(set.KafkaClient("scores"), set.Topics.Scores, s.risk, set.Registerer, set.Logger)
		if err != nil {
			return nil, err
		}
		s.scores = f
		s.closes = append(s.closes, f.Close)
	}
	if err := s.openPublisher(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Source) openPublisher() error {
	cl, err := kafkaio.NewClient(s.set.KafkaClient(""))
	if err != nil {
		return err
	}
	s.closes = append(s.closes, cl.Close)
	sc := s.cfg.Spool
	if sc.Dir == "" {
		s.set.Logger.Warn("no audit spool (spool.dir empty): events are dropped and counted if Kafka stays unreachable")
		s.Publisher = mcp.NewKafkaPublisher(cl, s.set.Topics.Raw, s.set.Logger, s.set.Registerer)
		s.Actions = mcp.NewKafkaActionPublisher(cl, s.set.Topics.Actions, s.set.Logger, s.set.Registerer)
		s.flush = cl.Flush
		return nil
	}
	sync, _ := spool.ParseSyncPolicy(sc.Sync) // validated
	mode, _ := fullMode(sc.Full)
	opts := []spool.Option{spool.WithSync(sync, spool.DefaultSyncInterval)}
	if sc.MaxBytes > 0 {
		opts = append(opts, spool.WithMaxBytes(sc.MaxBytes))
	}
	openSpool := func(dir string) (*spool.Spool, error) {
		sp, err := spool.Open(dir, opts...)
		if err != nil {
			return nil, fmt.Errorf("audit spool: %w", err)
		}
		s.closes = append(s.closes, func() {
			if err := sp.Close(); err != nil {
				s.set.Logger.Warn("close audit spool", "dir", dir, "err", err)
			}
		})
		return sp, nil
	}
	sp, err := openSpool(sc.Dir)
	if err != nil {
		return err
	}
	dp, err := mcp.NewDurablePublisher(cl, sp, s.set.Topics.Raw, mcp.WithSpoolFullMode(mode),
		mcp.WithDurableRegisterer(s.set.Registerer), mcp.WithDurableLogger(s.set.Logger))
	if err != nil {
		return err
	}
	// The actions have a spool of their own: a spool record holds no topic. The events' spool
	// ignores the subdirectory.
	asp, err := openSpool(filepath.Join(sc.Dir, "actions"))
	if err != nil {
		return err
	}
	ap, err := mcp.NewDurablePublisher(cl, asp, s.set.Topics.Actions, mcp.WithSpoolFullMode(mode),
		mcp.WithMetricPrefix("mcpwatch_gateway_actions"), mcp.WithDurableRegisterer(s.set.Registerer),
		mcp.WithDurableLogger(s.set.Logger))
	if err != nil {
		_ = dp.Close(context.Background())
		return err
	}
	s.Publisher, s.Actions = dp, ap
	// Close hands what Kafka has not acknowledged to the spools.
	s.flush = func(ctx context.Context) error { return errors.Join(dp.Close(ctx), ap.Close(ctx)) }
	return nil
}

// Run follows the control and scores topics and reloads the policy and pins until ctx ends.
func (s *Source) Run(ctx context.Context) error {
	p := &component.Parts{}
	if s.control != nil {
		p.Go(s.control.Run)
	}
	if s.scores != nil {
		p.Go(s.scores.Run)
	}
	if s.Policy != nil {
		p.Go(func(ctx context.Context) error { return s.Policy.Run(ctx, s.cfg.Policy.Reload) })
	}
	if s.Pins != nil {
		p.Go(func(ctx context.Context) error { return s.Pins.Run(ctx, s.cfg.ToolPins.Reload) })
	}
	err := p.Run(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// ControlLoaded is closed once the control topic has been read to its end: before that a
// revoked principal could slip in, so sources refuse calls until then. Without FollowControl it
// is closed from the start.
func (s *Source) ControlLoaded() <-chan struct{} {
	if s.control == nil {
		return closed
	}
	return s.control.Ready()
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// WaitReady waits until the control and scores topics are loaded or ctx ends.
func (s *Source) WaitReady(ctx context.Context) error {
	for _, f := range []*kafkaio.Follower{s.control, s.scores} {
		if f == nil {
			continue
		}
		if err := f.WaitReady(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Risk is the principal's live threat score for the policy: unknown until the scores topic is
// loaded (rules with max_risk then refuse), and 0 for a principal never scored after that, since
// the scorer publishes a score of 0 when one falls back.
func (s *Source) Risk(tenant, subject string) (float64, bool) {
	if s.scores == nil {
		return 0, false
	}
	select {
	case <-s.scores.Ready():
		return scores.ZeroWhenAbsent{Store: s.risk}.Risk(tenant, subject)
	default:
		return 0, false
	}
}

// Close delivers or spools the events not yet acknowledged (waiting at most until ctx ends) and
// releases the spool, the client and the followers. Call it after the source stopped publishing.
func (s *Source) Close(ctx context.Context) error {
	var err error
	if s.flush != nil {
		if err = s.flush(ctx); err != nil {
			err = fmt.Errorf("audit events not flushed: %w", err)
		}
		s.flush = nil
	}
	s.release()
	return err
}

func (s *Source) release() {
	for i := len(s.closes) - 1; i >= 0; i-- {
		s.closes[i]()
	}
	s.closes = nil
}
