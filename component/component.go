// Package component is the one shape every part of mcpwatch is built in: a [Factory] with a type
// name, a default [Config] that validates itself, and a constructor that takes one [Settings]
// value and returns a [Component] to run.
//
// The shape follows the OpenTelemetry Collector's: configuration is data (decoded from one YAML
// section per component, then overridden by flags), construction is one call with everything the
// component may use from its host (logger, metrics, health, topics, Kafka, ClickHouse), and the
// host (package app) builds any set of components from a [Registry] in a loop. Components talk to
// each other only through Kafka topics; none imports another.
package component

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// Type names a kind of component: "process", "sink", "gateway", ... It is also the name of its
// section in the config file, of its command, and the suffix of its consumer group.
type Type string

// Config is a component's configuration. Validate reports every problem at once; errors about one
// field are wrapped with [Field] so the config loader can point at the line and column.
type Config interface {
	Validate() error
}

// Component is a built component. Run serves until ctx ends (a clean stop returns nil) or the
// component fails. Close releases what Create acquired; the host calls it exactly once, after Run
// returned or instead of Run when another component failed to build.
type Component interface {
	Run(ctx context.Context) error
	Close() error
}

// Health is where a component reports readiness checks: nil is ready. [obs.Health] implements it.
type Health interface {
	Set(check string, err error)
}

// ClickHouse is the ClickHouse connection a component may use (the writer account).
type ClickHouse struct {
	Addr     string
	Database string
	User     string
	Password string // resolved from the environment or a file, never from the config file
}

// Settings is everything a component gets from its host.
type Settings struct {
	// Type of the component being built; Logger is already labelled with it.
	Type       Type
	Logger     *slog.Logger
	Registerer prometheus.Registerer // never nil
	Health     Health                // never nil
	Topics     event.Topics
	// Kafka is the client configuration; its ClientID is "mcpwatch-<type>". Build clients with
	// kafkaio.NewClient, stages with kafkaio.NewStage.
	Kafka kafkaio.Config
	// GroupPrefix prefixes consumer groups: a component's groups are [Settings.Group].
	GroupPrefix string
	ClickHouse  ClickHouse
}

// Group is the consumer group of a stage of this component: "<prefix>-<name>".
func (s Settings) Group(name string) string { return s.GroupPrefix + "-" + name }

// KafkaClient is the Kafka client configuration for one client of this component, named
// "mcpwatch-<type>" or "mcpwatch-<type>-<suffix>".
func (s Settings) KafkaClient(suffix string) kafkaio.Config {
	kc := s.Kafka
	kc.ClientID = "mcpwatch-" + string(s.Type)
	if suffix != "" {
		kc.ClientID += "-" + suffix
	}
	kc.Logger = s.Logger
	return kc
}

// Factory builds components of one type.
type Factory interface {
	Type() Type
	// Section is the config file section the component's config is decoded from: its type,
	// unless two components share one configuration.
	Section() string
	// CreateDefaultConfig returns a pointer to a new config holding the defaults.
	CreateDefaultConfig() Config
	// Create builds a component from a validated config of the type CreateDefaultConfig returns.
	Create(ctx context.Context, set Settings, cfg Config) (Component, error)
	// Enabled reports whether `mcpwatch run`, when not told which components to start, starts
	// this one under cfg: the gateway only with an upstream, forwarding only with a collector,
	// webhooks only with a receiver.
	Enabled(cfg Config) bool
}

// FactoryOption adjusts [NewFactory].
type FactoryOption func(*factory)

// WithSection makes the component read another component's config section: for two components
// that must act on one configuration (the responder's enforcing and notifying stages).
func WithSection(s string) FactoryOption { return func(f *factory) { f.section = s } }

// WithEnabled sets when the component runs unasked (default: always); see [Factory.Enabled].
func WithEnabled[C Config](enabled func(C) bool) FactoryOption {
	return func(f *factory) {
		f.enabled = func(cfg Config) bool {
			c, ok := cfg.(C)
			return ok && enabled(c)
		}
	}
}

// NewFactory returns a Factory for configs of type C (a pointer type).
func NewFactory[C Config](typ Type, def func() C, create func(context.Context, Settings, C) (Component, error), opts ...FactoryOption) Factory {
	f := &factory{typ: typ, section: string(typ), enabled: func(Config) bool { return true },
		def: func() Config { return def() },
		create: func(ctx context.Context, set Settings, cfg Config) (Component, error) {
			c, ok := cfg.(C)
			if !ok {
				return nil, fmt.Errorf("%s: config is %T, want %T", typ, cfg, *new(C))
			}
			return create(ctx, set, c)
		}}
	for _, o := range opts {
		o(f)
	}
	return f
}

type factory struct {
	typ     Type
	section string
	def     func() Config
	create  func(context.Context, Settings, Config) (Component, error)
	enabled func(Config) bool
}

func (f *factory) Type() Type                  { return f.typ }
func (f *factory) Section() string             { return f.section }
func (f *factory) CreateDefaultConfig() Config { return f.def() }
func (f *factory) Enabled(cfg Config) bool     { return f.enabled(cfg) }
func (f *factory) Create(ctx context.Context, set Settings, cfg Config) (Component, error) {
	return f.create(ctx, set, cfg)
}

// Registry holds the factories a host can build, in registration order.
type Registry struct {
	byType map[Type]Factory
	order  []Type
}

// NewRegistry returns a registry of fs; two factories of one type are an error.
func NewRegistry(fs ...Factory) (*Registry, error) {
	r := &Registry{byType: make(map[Type]Factory, len(fs))}
	for _, f := range fs {
		if _, dup := r.byType[f.Type()]; dup {
			return nil, fmt.Errorf("component type %q registered twice", f.Type())
		}
		r.byType[f.Type()] = f
		r.order = append(r.order, f.Type())
	}
	return r, nil
}

// Types returns the registered types in registration order.
func (r *Registry) Types() []Type { return slices.Clone(r.order) }

// Sections returns the config sections of the registered factories, each once.
func (r *Registry) Sections() []string {
	var out []string
	for _, t := range r.order {
		if s := r.byType[t].Section(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// ErrUnknownType is returned for a component type no factory is registered for.
var ErrUnknownType = errors.New("unknown component type")

// Lookup returns the factory of t, or an error naming the known types.
func (r *Registry) Lookup(t Type) (Factory, error) {
	if f, ok := r.byType[t]; ok {
		return f, nil
	}
	return nil, fmt.Errorf("%w %q (known: %v)", ErrUnknownType, t, r.order)
}
