// Package pipeline wires mcpwatch's stages into one process: any subset of the Kafka stages
// (process, sink, detect, respond) and, optionally, the MCP gateway with its control-topic
// follower. The stages still talk only through Kafka; this package only starts and stops them,
// so `mcpwatch run` and a deployment with one stage per process behave the same.
package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/mcpwatch/mcpwatch/detectors"
	"github.com/mcpwatch/mcpwatch/enrich"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/internal/control"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/obs"
	"github.com/mcpwatch/mcpwatch/internal/pins"
	"github.com/mcpwatch/mcpwatch/internal/scores"
	"github.com/mcpwatch/mcpwatch/internal/spool"
	"github.com/mcpwatch/mcpwatch/policy"
	"github.com/mcpwatch/mcpwatch/processors"
	"github.com/mcpwatch/mcpwatch/response"
	"github.com/mcpwatch/mcpwatch/storage"
)

// Stage names.
const (
	StageProcess = "process"
	StageSink    = "sink"
	StageDetect  = "detect"
	StageRespond = "respond"
)

// AllStages are the Kafka stages in data-flow order.
var AllStages = []string{StageProcess, StageSink, StageDetect, StageRespond}

// Config is what the pipeline needs.
type Config struct {
	Kafka          kafkaio.Config
	Topics         event.Topics
	Partitions     int32
	Replication    int16
	RetentionHours int

	ClickHouse storage.Options // the writer; used by the sink
	Sink       SinkOptions
	Rate       detectors.RateConfig
	Respond    response.Config

	// GroupPrefix prefixes the consumer groups ("<prefix>-<stage>"). Default "mcpwatch". Two
	// pipelines on one cluster with different topics need different prefixes.
	GroupPrefix string

	Stages []string // subset of AllStages
	// Gateway, when set, runs an MCP gateway on Gateway.Listen.
	Gateway *mcp.Config
	// Routes, when set, make the gateway serve several upstream servers by path prefix (an
	// [mcp.Router]); Gateway then holds the settings they share and its Upstream and ServerName
	// are not used. The router closes the routes' sandbox bridges at shutdown.
	Routes []mcp.Route
	// PolicyFile is the gateway's access policy, reloaded every PolicyReload (default 2s). Empty
	// leaves Gateway.Policy as given (nil: no policy evaluation; the command allows that only
	// with an explicit --no-policy).
	PolicyFile   string
	PolicyReload time.Duration
	// ToolPinsFile is the gateway's tool pin file (see internal/pins), reloaded every
	// ToolPinsReload (default 2s); ToolPinning its mode. Empty file or mode off: no pinning.
	ToolPinsFile   string
	ToolPinning    pins.Mode
	ToolPinsReload time.Duration
	// CatalogFile and DirectoryFile enrich events in the process stage (see package enrich):
	// data classes and sensitivity from the catalog; department, peer group and roles from the
	// directory. Both are reloaded every EnrichReload (default 2s) when they change. Empty: that
	// part is not applied. A broken file fails Build.
	CatalogFile   string
	DirectoryFile string
	EnrichReload  time.Duration
	// Spool, when Dir is set, makes the gateway's audit delivery durable: while Kafka is not
	// acknowledging, events go to a bounded disk spool and are replayed in order later; when the
	// spool is full the gateway refuses calls (fail closed) unless FullMode is "fail_open".
	Spool SpoolConfig
}

// SinkOptions tune the sink stage. Zero values take the defaults.
type SinkOptions struct {
	// A batch is written when it holds BatchRows records or BatchBytes bytes, or BatchDelay after
	// its first record arrived. Defaults 20000, 16 MiB, 1s.
	BatchRows     int
	BatchBytes    int
	BatchDelay    time.Duration
	InsertTimeout time.Duration // default 60s
	// Retention, when set, is enforced every RetentionInterval (default 1h) by the sink itself.
	Retention         storage.Retention
	RetentionInterval time.Duration
}

// SpoolConfig configures the gateway's audit spool.
type SpoolConfig struct {
	Dir      string
	MaxBytes int64  // default spool.DefaultMaxBytes
	Sync     string // always, interval (default) or none
	FullMode string // fail_closed (default) or fail_open
}

// Pipeline is a built, not yet running, set of stages.
type Pipeline struct {
	cfg    Config
	log    *slog.Logger
	health *obs.Health
	stages []*kafkaio.Stage
	closes []func() error
	loops  []func(context.Context) error // housekeeping that runs beside the stages

	gw interface {
		http.Handler
		Close()
	}
	gwLn     net.Listener
	gwURL    string
	follower *control.Follower
	scoresF  *scores.Follower
	policy   *policy.Store
	pins     *pins.Store
	enricher *enrich.Enricher
	pubCl    interface{ Close() }
	flush    func(context.Context) error
	sp       *spool.Spool
	dp       *mcp.DurablePublisher
}

// Build bootstraps the topics and constructs every requested stage; nothing consumes until
// [Pipeline.Run]. On error everything built so far is released.
func Build(ctx context.Context, cfg Config, reg prometheus.Registerer, health *obs.Health, log *slog.Logger) (p *Pipeline, err error) {
	if log == nil {
		log = slog.Default()
	}
	if health == nil {
		health = obs.NewHealth()
	}
	if cfg.GroupPrefix == "" {
		cfg.GroupPrefix = "mcpwatch"
	}
	p = &Pipeline{cfg: cfg, log: log, health: health}
	built := p // the error returns below set p to nil
	defer func() {
		if err != nil {
			for _, st := range built.stages {
				st.Client().Close() // built, never run
			}
			built.release()
		}
	}()
	// Enrichment files are checked before anything touches Kafka: a broken file stops the start.
	if slices.Contains(cfg.Stages, StageProcess) && (cfg.CatalogFile != "" || cfg.DirectoryFile != "") {
		en, err := enrich.Open(cfg.CatalogFile, cfg.DirectoryFile, enrich.WithLogger(log.With("component", "enrich")))
		if err != nil {
			return nil, fmt.Errorf("stage %s: %w", StageProcess, err)
		}
		p.enricher = en
		log.Info("enrichment loaded", "catalog", cfg.CatalogFile, "directory", cfg.DirectoryFile)
	}
	if err := bootstrap(ctx, cfg); err != nil {
		return nil, err
	}
	for _, name := range cfg.Stages {
		if err := p.addStage(ctx, name, reg); err != nil {
			return nil, fmt.Errorf("stage %s: %w", name, err)
		}
	}
	if cfg.Gateway != nil {
		if err := p.addGateway(ctx, *cfg.Gateway, reg); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}
	return p, nil
}

func bootstrap(ctx context.Context, cfg Config) error {
	kc := cfg.Kafka
	kc.ClientID = "mcpwatch-bootstrap"
	cl, err := kafkaio.NewClient(kc)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := kafkaio.EnsureTopics(ctx, cl, kafkaio.Topics(cfg.Topics, cfg.Partitions, cfg.Replication, cfg.RetentionHours)); err != nil {
		return fmt.Errorf("bootstrap topics: %w", err)
	}
	return nil
}

func (p *Pipeline) kafka(name string) kafkaio.Config {
	kc := p.cfg.Kafka
	kc.ClientID = "mcpwatch-" + name
	return kc
}

func (p *Pipeline) group(stage string) string { return p.cfg.GroupPrefix + "-" + stage }

func (p *Pipeline) addStage(ctx context.Context, name string, reg prometheus.Registerer) error {
	t := p.cfg.Topics
	plain := func(topic string, h kafkaio.Handler) error {
		st, err := kafkaio.NewStage(p.kafka(name), kafkaio.StageConfig{Name: name, Group: p.group(name),
			Topics: []string{topic}, DeadLetterTopic: t.DeadLetter}, h, reg, p.log)
		if err == nil {
			p.stages = append(p.stages, st)
		}
		return err
	}
	switch name {
	case StageProcess:
		var opts []processors.HandlerOption
		if p.enricher != nil {
			opts = append(opts, processors.WithEnricher(p.enricher))
		}
		return plain(t.Raw, processors.Handler(t, p.log, opts...))
	case StageDetect:
		h, err := detectors.Handler(t, p.cfg.Rate, reg, p.log)
		if err != nil {
			return err
		}
		return plain(t.Events, h)
	case StageSink:
		conn, err := storage.Open(ctx, p.cfg.ClickHouse)
		if err != nil {
			return err
		}
		so := p.cfg.Sink
		sink, err := storage.NewSink(ctx, conn, storage.SinkConfig{Database: p.cfg.ClickHouse.Database, Topics: t,
			InsertTimeout: so.InsertTimeout, Logger: p.log, Registerer: reg})
		if err != nil {
			_ = conn.Close()
			return err
		}
		p.closes = append(p.closes, sink.Close)
		st, err := kafkaio.NewStage(p.kafka(name), kafkaio.StageConfig{Name: name, Group: p.group(name),
			Topics: sink.Topics(), DeadLetterTopic: t.DeadLetter, MaxPoll: cmp.Or(so.BatchRows, 20_000),
			MaxBatchBytes: cmp.Or(so.BatchBytes, 16<<20), MaxBatchDelay: cmp.Or(so.BatchDelay, time.Second)}, sink, reg, p.log)
		if err != nil {
			return err
		}
		p.stages = append(p.stages, st)
		if len(so.Retention) > 0 {
			p.loops = append(p.loops, func(ctx context.Context) error {
				return sink.EnforceRetention(ctx, so.Retention, cmp.Or(so.RetentionInterval, time.Hour))
			})
		}
		return nil
	case StageRespond:
		r, err := response.New(t, p.cfg.Respond, reg, p.log)
		if err != nil {
			return err
		}
		p.closes = append(p.closes, func() error { r.Close(); return nil })
		sts, err := r.Stages(p.kafka(name), p.cfg.GroupPrefix, reg)
		if err == nil {
			p.stages = append(p.stages, sts...)
		}
		return err
	}
	return fmt.Errorf("unknown stage %q (want one of %v)", name, AllStages)
}

func (p *Pipeline) addGateway(ctx context.Context, cfg mcp.Config, reg prometheus.Registerer) error {
	store := control.NewStore()
	f, err := control.NewFollower(p.kafka("gateway-control"), p.cfg.Topics.Control, store, reg, p.log)
	if err != nil {
		return err
	}
	p.follower = f
	// The detectors' live scores are the policy's risk.
	risk := scores.NewStore()
	sf, err := scores.NewFollower(p.kafka("gateway-scores"), p.cfg.Topics.Scores, risk, reg, p.log)
	if err != nil {
		return err
	}
	p.scoresF = sf
	if cfg.Scores == nil {
		// The gateway serves only once the follower has caught up, so a principal the detectors
		// never scored above 0 has risk 0 (see scores.ZeroWhenAbsent), not an unknown risk.
		cfg.Scores = scores.ZeroWhenAbsent{Store: risk}
	}
	if p.cfg.PolicyFile != "" {
		ps, err := policy.NewStore(p.cfg.PolicyFile, policy.WithLogger(p.log.With("component", "policy")))
		if err != nil {
			return err
		}
		p.policy = ps
		cfg.Policy = ps
		p.log.Info("gateway policy loaded", "path", p.cfg.PolicyFile, "rules", ps.Policy().Len())
	}
	if p.cfg.ToolPinsFile != "" && p.cfg.ToolPinning != "" && p.cfg.ToolPinning != pins.Off {
		ts, err := pins.Open(p.cfg.ToolPinsFile, p.cfg.ToolPinning, p.log.With("component", "tool-pins"))
		if err != nil {
			return err
		}
		p.pins = ts
		cfg.ToolPins = ts
		p.log.Info("gateway tool pins loaded", "path", p.cfg.ToolPinsFile, "mode", p.cfg.ToolPinning)
	}
	cl, err := kafkaio.NewClient(p.kafka("gateway"))
	if err != nil {
		return err
	}
	p.pubCl = cl
	p.flush = cl.Flush
	// Static tokens or the OAuth resource server; the latter discovers the authorization server
	// and fetches its keys now, so that a wrong issuer fails the start, not the first call.
	auth, err := mcp.NewAuthenticator(ctx, cfg, p.log)
	if err != nil {
		return err
	}
	if c, ok := auth.(interface{ Close() }); ok {
		p.closes = append(p.closes, func() error { c.Close(); return nil })
	}
	var pub mcp.Publisher
	if sc := p.cfg.Spool; sc.Dir == "" {
		pub = mcp.NewKafkaPublisher(cl, p.cfg.Topics.Raw, p.log, reg)
	} else {
		sync, err := spool.ParseSyncPolicy(sc.Sync)
		if err != nil {
			return err
		}
		mode := mcp.FailClosed
		switch sc.FullMode {
		case "", string(mcp.FailClosed):
		case string(mcp.FailOpen):
			mode = mcp.FailOpen
		default:
			return fmt.Errorf("spool full mode %q: want fail_closed or fail_open", sc.FullMode)
		}
		opts := []spool.Option{spool.WithSync(sync, spool.DefaultSyncInterval)}
		if sc.MaxBytes > 0 {
			opts = append(opts, spool.WithMaxBytes(sc.MaxBytes))
		}
		sp, err := spool.Open(sc.Dir, opts...)
		if err != nil {
			return fmt.Errorf("audit spool: %w", err)
		}
		p.sp = sp
		dp, err := mcp.NewDurablePublisher(cl, sp, p.cfg.Topics.Raw, mcp.WithSpoolFullMode(mode),
			mcp.WithDurableRegisterer(reg), mcp.WithDurableLogger(p.log))
		if err != nil {
			return err
		}
		pub, p.dp = dp, dp
		p.flush = dp.Close // hands what Kafka has not acknowledged to the spool
	}
	if len(p.cfg.Routes) > 0 {
		r, err := mcp.NewRouter(cfg, p.cfg.Routes, auth, pub, store, reg, p.log)
		if err != nil {
			return err
		}
		p.gw = r
	} else {
		gw, err := mcp.New(cfg, auth, pub, store, reg, p.log)
		if err != nil {
			return err
		}
		p.gw = gw
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	p.gwLn = ln
	p.gwURL = "http://" + ln.Addr().String() + "/mcp"
	p.health.NotReady("control-topic")
	return nil
}

// GatewayURL is the gateway's MCP endpoint, or "" without a gateway.
func (p *Pipeline) GatewayURL() string { return p.gwURL }

// Run runs everything until ctx ends or a part fails, then shuts down in order: the gateway stops
// taking calls, its audit events are flushed, the stages finish their batches and commit.
func (p *Pipeline) Run(ctx context.Context) error {
	eg, gctx := errgroup.WithContext(ctx)
	for _, st := range p.stages {
		eg.Go(func() error { return st.Run(gctx) })
	}
	for _, loop := range p.loops {
		eg.Go(func() error { return loop(gctx) })
	}
	if p.gw != nil {
		eg.Go(func() error { return p.runGateway(gctx) })
	}
	if p.enricher != nil {
		interval := p.cfg.EnrichReload
		if interval <= 0 {
			interval = 2 * time.Second
		}
		eg.Go(func() error { return p.enricher.Run(gctx, interval) })
	}
	err := eg.Wait()
	p.release()
	return err
}

func (p *Pipeline) runGateway(ctx context.Context) error {
	fctx, stopFollower := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 4)
	go func() { done <- p.follower.Run(fctx) }()
	go func() { done <- p.scoresF.Run(fctx) }()
	running := 2
	if p.policy != nil {
		interval := p.cfg.PolicyReload
		if interval <= 0 {
			interval = 2 * time.Second
		}
		running++
		go func() { done <- p.policy.Run(fctx, interval) }()
	}
	if p.pins != nil {
		interval := p.cfg.ToolPinsReload
		if interval <= 0 {
			interval = 2 * time.Second
		}
		running++
		go func() { done <- p.pins.Run(fctx, interval) }()
	}
	defer func() {
		stopFollower()
		for range running {
			<-done
		}
	}()
	// Serving before the control topic is rebuilt would let revoked principals back in; before
	// the scores are, every risk would be unknown.
	for _, w := range []func(context.Context) error{p.follower.WaitReady, p.scoresF.WaitReady} {
		if err := w(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	p.health.Set("control-topic", nil)
	srv := &http.Server{Handler: p.gw, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	p.log.Info("gateway serving", "url", p.GatewayURL(), "upstream", p.cfg.Gateway.Upstream)
	err := srv.Serve(p.gwLn) // Serve closes the listener
	p.gw.Close()
	fctx2, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ferr := p.flush(fctx2); ferr != nil {
		p.log.Error("audit events not flushed at shutdown", "err", ferr)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// release closes what Build opened; safe to call twice.
func (p *Pipeline) release() {
	for _, c := range p.closes {
		if err := c(); err != nil {
			p.log.Warn("close", "err", err)
		}
	}
	p.closes = nil
	if p.gw != nil {
		p.gw.Close() // idempotent: ends sandboxed sessions when Build failed after the gateway
	}
	if p.gwLn != nil {
		_ = p.gwLn.Close() // no-op error once Serve closed it
	}
	if p.dp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := p.dp.Close(ctx); err != nil { // no-op after a clean shutdown
			p.log.Warn("close audit publisher", "err", err)
		}
		cancel()
		p.dp = nil
	}
	if p.sp != nil {
		if err := p.sp.Close(); err != nil {
			p.log.Warn("close audit spool", "err", err)
		}
		p.sp = nil
	}
	if p.pubCl != nil {
		p.pubCl.Close()
		p.pubCl = nil
	}
}
