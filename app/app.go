// Package app builds and runs any set of mcpwatch components in one process, from one [Config]:
// `mcpwatch run` starts them all, each stage command starts one. The components still talk only
// through Kafka, so one process with everything and one process per component behave the same.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/obs"
)

// Host is what the process gives its components.
type Host struct {
	Logger     *slog.Logger          // default slog.Default()
	Registerer prometheus.Registerer // default: a registry nobody reads
	Health     *obs.Health           // default: a new one
}

// App is a built, not yet running, set of components.
type App struct {
	log   *slog.Logger
	comps []built
}

type built struct {
	typ component.Type
	c   component.Component
}

// RunTypes are the components `mcpwatch run` starts under cfg: cfg.Run when set, else every
// registered component its factory enables under cfg.
func RunTypes(cfg *Config) []component.Type {
	if len(cfg.Run) > 0 {
		return cfg.Run
	}
	var out []component.Type
	for _, t := range cfg.reg.Types() {
		f, _ := cfg.reg.Lookup(t)
		if f.Enabled(cfg.Components[f.Section()]) {
			out = append(out, t)
		}
	}
	return out
}

// Build validates cfg for types, creates the topics, and constructs each component in order;
// nothing runs until [App.Run]. On error, what was built is closed.
func Build(ctx context.Context, cfg *Config, types []component.Type, host Host) (_ *App, err error) {
	if host.Logger == nil {
		host.Logger = slog.Default()
	}
	if host.Registerer == nil {
		host.Registerer = prometheus.NewRegistry()
	}
	if host.Health == nil {
		host.Health = obs.NewHealth()
	}
	if len(types) == 0 {
		return nil, errors.New("no components to run")
	}
	var factories []component.Factory
	var sections []string
	for _, t := range types {
		f, err := cfg.reg.Lookup(t)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(factories, func(g component.Factory) bool { return g.Type() == t }) {
			return nil, fmt.Errorf("component %q listed twice", t)
		}
		factories = append(factories, f)
		if !slices.Contains(sections, f.Section()) {
			sections = append(sections, f.Section())
		}
	}
	if err := cfg.Validate(sections); err != nil {
		return nil, err
	}
	ch, err := cfg.clickhouse()
	if err != nil {
		return nil, err
	}
	if err := bootstrap(ctx, cfg); err != nil {
		return nil, err
	}
	a := &App{log: host.Logger}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	for _, f := range factories {
		set := component.Settings{
			Type:        f.Type(),
			Logger:      host.Logger.With("component", string(f.Type())),
			Registerer:  host.Registerer,
			Health:      host.Health,
			Topics:      cfg.Topics(),
			Kafka:       cfg.KafkaConfig(""),
			GroupPrefix: cfg.groupPrefix(),
			ClickHouse:  ch,
		}
		c, err := f.Create(ctx, set, cfg.Components[f.Section()])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Type(), err)
		}
		a.comps = append(a.comps, built{f.Type(), c})
	}
	return a, nil
}

func (c *Config) groupPrefix() string {
	switch {
	case c.Kafka.GroupPrefix != "":
		return c.Kafka.GroupPrefix
	case c.Kafka.TopicPrefix != "":
		return c.Kafka.TopicPrefix
	}
	return event.DefaultTopicPrefix
}

// clickhouse resolves the writer account's password.
func (c *Config) clickhouse() (component.ClickHouse, error) {
	pw, err := c.ClickHouse.Password.Resolve()
	if err != nil {
		return component.ClickHouse{}, fmt.Errorf("clickhouse.password: %w", err)
	}
	return component.ClickHouse{Addr: c.ClickHouse.Addr, Database: c.ClickHouse.Database, User: c.ClickHouse.User, Password: pw}, nil
}

// Bootstrap creates or reconciles the topics (idempotent).
func Bootstrap(ctx context.Context, cfg *Config) error { return bootstrap(ctx, cfg) }

func bootstrap(ctx context.Context, cfg *Config) error {
	cl, err := kafkaio.NewClient(cfg.KafkaConfig("mcpwatch-bootstrap"))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	k := cfg.Kafka
	if err := kafkaio.EnsureTopics(ctx, cl, kafkaio.Topics(cfg.Topics(), k.Partitions, k.Replication, k.RetentionHours)); err != nil {
		return fmt.Errorf("bootstrap topics: %w", err)
	}
	return nil
}

// Component returns the built component of type t, or nil.
func (a *App) Component(t component.Type) component.Component {
	for _, b := range a.comps {
		if b.typ == t {
			return b.c
		}
	}
	return nil
}

// Run runs every component until ctx ends or one fails; then the others are stopped, and every
// component is closed once all have returned.
func (a *App) Run(ctx context.Context) error {
	defer a.close()
	eg, gctx := errgroup.WithContext(ctx)
	for _, b := range a.comps {
		eg.Go(func() error {
			if err := b.c.Run(gctx); err != nil {
				return fmt.Errorf("%s: %w", b.typ, err)
			}
			return nil
		})
	}
	return eg.Wait()
}

// close closes every component once, in reverse order of construction.
func (a *App) close() {
	for i := len(a.comps) - 1; i >= 0; i-- {
		if err := a.comps[i].c.Close(); err != nil {
			a.log.Warn("close", "component", a.comps[i].typ, "err", err)
		}
	}
	a.comps = nil
}
