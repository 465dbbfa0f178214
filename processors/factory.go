package processors

import (
	"context"
	"time"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/enrich"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// Type is the process stage's component type.
const Type component.Type = "process"

// Config configures the process stage: raw events → normalized events (CEF, OCSF), enriched
// from a data catalog and a principal directory (see docs/enrichment.md).
type Config struct {
	// CatalogFile is the data catalog (YAML): data classes and sensitivity of resources, tools,
	// prompts and servers. Empty: no data classes.
	CatalogFile string `yaml:"catalog_file"`
	// DirectoryFile is the principal directory (.csv or .yaml): department, peer group, roles
	// and attributes by subject or client id. Empty: no directory.
	DirectoryFile string `yaml:"directory_file"`
	// Reload is how often both files are checked for changes.
	Reload time.Duration `yaml:"reload"`
}

// DefaultConfig returns the defaults: no enrichment, files checked every 2s once set.
func DefaultConfig() *Config { return &Config{Reload: 2 * time.Second} }

// Validate reports a config the stage cannot work with. Broken files are found by Create.
func (c *Config) Validate() error {
	if c.Reload <= 0 {
		return component.Fieldf("reload", "must be positive, got %s", c.Reload)
	}
	return nil
}

// NewFactory returns the process stage's factory.
func NewFactory() component.Factory { return component.NewFactory(Type, DefaultConfig, create) }

func create(_ context.Context, set component.Settings, cfg *Config) (component.Component, error) {
	var opts []HandlerOption
	p := &component.Parts{}
	// Enrichment files are read before anything touches Kafka: a broken file stops the start.
	if cfg.CatalogFile != "" || cfg.DirectoryFile != "" {
		en, err := enrich.Open(cfg.CatalogFile, cfg.DirectoryFile, enrich.WithLogger(set.Logger.With("part", "enrich")))
		if err != nil {
			return nil, err
		}
		set.Logger.Info("enrichment loaded", "catalog", cfg.CatalogFile, "directory", cfg.DirectoryFile)
		opts = append(opts, WithEnricher(en))
		p.Go(func(ctx context.Context) error { return en.Run(ctx, cfg.Reload) })
	}
	st, err := kafkaio.NewStage(set.KafkaClient(""), kafkaio.StageConfig{Name: string(Type), Group: set.Group(string(Type)),
		Topics: []string{set.Topics.Raw}, DeadLetterTopic: set.Topics.DeadLetter}, Handler(set.Topics, set.Logger, opts...), set.Registerer, set.Logger)
	if err != nil {
		return nil, err
	}
	p.Go(st.Run)
	p.OnClose(st.Close)
	return p, nil
}
