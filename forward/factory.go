package forward

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/forward/syslog"
	"github.com/mcpwatch/mcpwatch/normalize"
)

// Type is the forwarding stage's component type.
const Type component.Type = StageName

// Config configures the forwarding stage: normalized events (and findings) → a syslog
// collector as CEF over RFC 5424, TLS 1.3 (see docs/siem.md).
type Config struct {
	Syslog Syslog `yaml:"syslog"`
	// Findings forwards the findings topic too.
	Findings bool `yaml:"findings"`
	// MinSeverity forwards only events and findings of at least this CEF severity (0–10).
	MinSeverity int `yaml:"min_severity"`
	// Sources forwards only events from these sources (mcp, otel, kernel); empty: all.
	Sources []event.Source `yaml:"sources"`
	// Batch is the records per batch (one write, one commit); it bounds memory to Batch ×
	// Syslog.MaxMessage.
	Batch int `yaml:"batch"`
	// FromEnd starts a new consumer group at the end of the topics (skips the retained backlog).
	FromEnd bool `yaml:"from_end"`
}

// Syslog is the collector connection and the message format.
type Syslog struct {
	syslog.Config `yaml:",inline"`
	// Facility is a name (audit, authpriv, local0..local7, ...) or 0–23.
	Facility string `yaml:"facility"`
	// Hostname is the messages' HOSTNAME (default: this host's name).
	Hostname string `yaml:"hostname"`
	// SDID adds structured data [SDID id="<event id>"]; name@<IANA enterprise number>.
	SDID string `yaml:"sd_id"`
	// BOM starts MSG with a UTF-8 BOM (RFC 5424 6.4); most CEF parsers reject it.
	BOM bool `yaml:"bom"`
	// MaxMessage is the largest message in octets; larger records are dead-lettered.
	MaxMessage int `yaml:"max_message"`
}

// DefaultConfig returns the defaults: TLS, facility audit, this host's name, 1,000 records a
// batch, no collector (the stage is off until one is set).
func DefaultConfig() *Config {
	host, _ := os.Hostname()
	return &Config{
		Syslog: Syslog{Config: syslog.Config{Transport: syslog.TransportTLS, DialTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, MaxBackoff: 30 * time.Second},
			Facility: "audit", Hostname: host, MaxMessage: syslog.DefaultMaxMessage},
		Batch: 1000,
	}
}

// Validate reports a config the stage cannot work with.
func (c *Config) Validate() error {
	var errs []error
	if c.Syslog.Address == "" {
		errs = append(errs, component.Fieldf("syslog.address", "required: host:port of the collector (TLS syslog is usually port 6514)"))
	} else if err := c.Syslog.Config.Validate(); err != nil {
		errs = append(errs, component.Field("syslog", err))
	}
	if _, err := syslog.ParseFacility(c.Syslog.Facility); err != nil {
		errs = append(errs, component.Field("syslog.facility", err))
	} else if _, err := c.formatter(); err != nil {
		errs = append(errs, component.Field("syslog", err))
	}
	if c.MinSeverity < 0 || c.MinSeverity > 10 {
		errs = append(errs, component.Fieldf("min_severity", "want 0-10, got %d", c.MinSeverity))
	}
	for i, s := range c.Sources {
		switch s {
		case event.SourceMCP, event.SourceOTel, event.SourceKernel:
		default:
			errs = append(errs, component.Fieldf(fmt.Sprintf("sources[%d]", i), "%q: want %s, %s or %s", s, event.SourceMCP, event.SourceOTel, event.SourceKernel))
		}
	}
	if c.Batch < 1 {
		errs = append(errs, component.Fieldf("batch", "must be at least 1, got %d", c.Batch))
	}
	return errors.Join(errs...)
}

// NewFactory returns the forwarding stage's factory; the stage runs unasked only when a
// collector address is set.
func NewFactory() component.Factory {
	return component.NewFactory(Type, DefaultConfig, create,
		component.WithEnabled(func(c *Config) bool { return c.Syslog.Address != "" }))
}

// formatter is the syslog message formatter the config describes.
func (c *Config) formatter() (*syslog.Formatter, error) {
	fac, err := syslog.ParseFacility(c.Syslog.Facility)
	if err != nil {
		return nil, err
	}
	return syslog.NewFormatter(syslog.FormatterConfig{Facility: fac, Hostname: c.Syslog.Hostname,
		ProcID: strconv.Itoa(os.Getpid()), SDID: c.Syslog.SDID, BOM: c.Syslog.BOM, MaxMessage: c.Syslog.MaxMessage})
}

func create(_ context.Context, set component.Settings, cfg *Config) (component.Component, error) {
	fm, err := cfg.formatter()
	if err != nil {
		return nil, err
	}
	hc := HandlerConfig{Topics: set.Topics, Formatter: fm, MinSeverity: cfg.MinSeverity, Sources: cfg.Sources}
	if cfg.Findings {
		hc.FindingCEF = normalize.FindingCEF
	}
	if cfg.Syslog.Transport == syslog.TransportTCP {
		set.Logger.Warn("SYSLOG WITHOUT TLS (transport tcp): audit records cross the network in plaintext; " +
			"use it only for a collector on the same host")
	}
	client, err := syslog.NewClient(cfg.Syslog.Config, syslog.WithLogger(set.Logger), syslog.WithRegisterer(set.Registerer),
		syslog.WithState(func(err error) { set.Health.Set("syslog-collector", err) }))
	if err != nil {
		return nil, err
	}
	p := &component.Parts{}
	p.OnClose(client.Close)
	h, err := NewHandler(hc, client, set.Registerer, set.Logger)
	if err != nil {
		_ = p.Close()
		return nil, err
	}
	st, err := NewStage(set.KafkaClient(""), StageOptions{Group: set.Group(StageName), MaxPoll: cfg.Batch, FromEnd: cfg.FromEnd}, h, set.Registerer, set.Logger)
	if err != nil {
		_ = p.Close()
		return nil, err
	}
	set.Logger.Info("forwarding to syslog", "collector", cfg.Syslog.Address, "transport", cfg.Syslog.Transport,
		"topics", hc.InputTopics(), "min_severity", cfg.MinSeverity)
	p.Go(st.Run)
	p.OnClose(st.Close)
	return p, nil
}
