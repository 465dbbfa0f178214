package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/app"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/obs"
	"github.com/mcpwatch/mcpwatch/storage"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// globals is what every subcommand shares: the configuration (defaults, then --config, then
// MCPWATCH_* variables, then flags; see flags.go) and the process's logger, metrics and health.
// Passwords come only from the environment or files, never from flags or the config file.
type globals struct {
	cfg        *app.Config
	configFile string
	b          *binder

	// Copies of cfg's shared settings for the commands that read them directly.
	kafka, topicPrefix          string
	partitions                  int32
	replication                 int16
	retentionHours              int
	chAddr, chDatabase, chUser  string
	logFormat, logLevel         string
	metricsAddr                 string
	chAdminUser, chReadOnlyUser string

	log *slog.Logger
	reg *prometheus.Registry
	hl  *obs.Health
}

func newRoot() *cobra.Command {
	root, _ := newCLI()
	return root
}

// newCLI returns the command tree and the globals its flags are bound to.
func newCLI() (*cobra.Command, *globals) {
	g := &globals{cfg: app.NewConfig(app.Components()), b: newBinder()}
	root := &cobra.Command{
		Use:           "mcpwatch",
		Short:         "Security audit and anomaly detection for MCP traffic",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.setup(cmd)
		},
	}
	c := g.cfg
	f := root.PersistentFlags()
	f.StringVar(&g.configFile, "config", "", "configuration file (YAML, a section per component; see deploy/mcpwatch.yaml); MCPWATCH_* variables and flags override it ($MCPWATCH_CONFIG)")
	f.StringSliceVar(&c.Kafka.Brokers, "kafka", c.Kafka.Brokers, "Kafka brokers, comma-separated")
	g.b.env(f, "kafka", "MCPWATCH_KAFKA_BROKERS")
	f.StringVar(&c.Kafka.TopicPrefix, "topic-prefix", c.Kafka.TopicPrefix, "prefix of every topic name (and, unless kafka.group_prefix is set, of consumer groups)")
	g.b.env(f, "topic-prefix", "MCPWATCH_TOPIC_PREFIX")
	f.Int32Var(&c.Kafka.Partitions, "partitions", c.Kafka.Partitions, "partitions of new event topics")
	g.b.env(f, "partitions", "MCPWATCH_PARTITIONS")
	f.Int16Var(&c.Kafka.Replication, "replication", c.Kafka.Replication, "replication factor of new topics")
	g.b.env(f, "replication", "MCPWATCH_REPLICATION")
	f.IntVar(&c.Kafka.RetentionHours, "retention-hours", c.Kafka.RetentionHours, "retention of event topics")
	g.b.env(f, "retention-hours", "MCPWATCH_RETENTION_HOURS")
	f.StringVar(&c.ClickHouse.Addr, "clickhouse", c.ClickHouse.Addr, "ClickHouse native address")
	g.b.env(f, "clickhouse", "MCPWATCH_CLICKHOUSE_ADDR")
	f.StringVar(&c.ClickHouse.Database, "clickhouse-database", c.ClickHouse.Database, "ClickHouse database")
	g.b.env(f, "clickhouse-database", "MCPWATCH_CLICKHOUSE_DATABASE")
	f.StringVar(&c.ClickHouse.User, "clickhouse-user", c.ClickHouse.User, "ClickHouse writer user (password from $MCPWATCH_CLICKHOUSE_PASSWORD or clickhouse.password)")
	g.b.env(f, "clickhouse-user", "MCPWATCH_CLICKHOUSE_USER")
	f.StringVar(&c.ClickHouse.AdminUser, "clickhouse-admin-user", c.ClickHouse.AdminUser, "ClickHouse administrator for migrations and retention (password from $MCPWATCH_CLICKHOUSE_ADMIN_PASSWORD)")
	g.b.env(f, "clickhouse-admin-user", "MCPWATCH_CLICKHOUSE_ADMIN_USER")
	f.StringVar(&c.ClickHouse.ReadOnlyUser, "clickhouse-ro-user", c.ClickHouse.ReadOnlyUser, "ClickHouse read-only user for queries (password from $MCPWATCH_CLICKHOUSE_RO_PASSWORD)")
	g.b.env(f, "clickhouse-ro-user", "MCPWATCH_CLICKHOUSE_RO_USER")
	f.StringVar(&c.Telemetry.LogFormat, "log-format", c.Telemetry.LogFormat, "log format: text or json")
	g.b.env(f, "log-format", "MCPWATCH_LOG_FORMAT")
	f.StringVar(&c.Telemetry.LogLevel, "log-level", c.Telemetry.LogLevel, "log level: debug, info, warn, error")
	g.b.env(f, "log-level", "MCPWATCH_LOG_LEVEL")
	f.StringVar(&c.Telemetry.MetricsAddr, "metrics-addr", c.Telemetry.MetricsAddr, "address for /metrics, /healthz, /readyz (empty disables)")
	g.b.env(f, "metrics-addr", "MCPWATCH_METRICS_ADDR")

	root.AddCommand(topicsCmd(g), migrateCmd(g), policyCmd(), benchCmd(g), toolsCmd())
	root.AddCommand(retentionCmd(g))
	root.AddCommand(evalCmd(g))
	root.AddCommand(sigmaCmd(g))
	root.AddCommand(playbookCmd())
	root.AddCommand(responseCmd(g))
	addStageCommands(root, g)
	return root, g
}

// setup reads the config file, applies the environment and the flags over it, and makes the
// logger, metrics registry and health of the process.
func (g *globals) setup(cmd *cobra.Command) error {
	if !cmd.Flags().Changed("config") {
		g.configFile = os.Getenv("MCPWATCH_CONFIG")
	}
	if err := g.b.apply(cmd, func() error {
		if g.configFile == "" {
			return nil
		}
		return g.cfg.LoadFile(g.configFile)
	}); err != nil {
		return err
	}
	c := g.cfg
	log, err := obs.NewLogger(c.Telemetry.LogFormat, c.Telemetry.LogLevel)
	if err != nil {
		return err
	}
	g.log, g.reg, g.hl = log, obs.NewRegistry(), obs.NewHealth()
	g.kafka, g.topicPrefix = strings.Join(c.Kafka.Brokers, ","), c.Kafka.TopicPrefix
	g.partitions, g.replication, g.retentionHours = c.Kafka.Partitions, c.Kafka.Replication, c.Kafka.RetentionHours
	g.chAddr, g.chDatabase, g.chUser = c.ClickHouse.Addr, c.ClickHouse.Database, c.ClickHouse.User
	g.chAdminUser, g.chReadOnlyUser = c.ClickHouse.AdminUser, c.ClickHouse.ReadOnlyUser
	g.logFormat, g.logLevel, g.metricsAddr = c.Telemetry.LogFormat, c.Telemetry.LogLevel, c.Telemetry.MetricsAddr
	return nil
}

func (g *globals) topics() event.Topics { return g.cfg.Topics() }

func (g *globals) kafkaConfig(clientID string) kafkaio.Config {
	kc := g.cfg.KafkaConfig(clientID)
	kc.Logger = g.log
	return kc
}

// clickhouse, clickhouseAdmin and clickhouseRO are the three ClickHouse accounts. A password
// whose file cannot be read is logged and left empty, so the server's refusal says which user.
func (g *globals) clickhouse() storage.Options {
	c := g.cfg.ClickHouse
	return storage.Options{Addr: c.Addr, Database: c.Database, User: c.User, Password: g.secret("clickhouse.password", c.Password)}
}

func (g *globals) clickhouseAdmin() storage.Options {
	c := g.cfg.ClickHouse
	return storage.Options{Addr: c.Addr, Database: c.Database, User: c.AdminUser, Password: g.secret("clickhouse.admin_password", c.AdminPassword)}
}

func (g *globals) clickhouseRO() storage.Options {
	c := g.cfg.ClickHouse
	return storage.Options{Addr: c.Addr, Database: c.Database, User: c.ReadOnlyUser, Password: g.secret("clickhouse.readonly_password", c.ReadOnlyPassword)}
}

func (g *globals) secret(name string, s interface{ Resolve() (string, error) }) string {
	v, err := s.Resolve()
	if err != nil && g.log != nil {
		g.log.Error("secret not readable", "setting", name, "err", err)
	}
	return v
}

// ensureTopics bootstraps the topics; every stage calls it at start so order of start-up does not
// matter.
func (g *globals) ensureTopics(cmd *cobra.Command) error { return g.ensureTopicsCtx(cmd.Context()) }

func (g *globals) ensureTopicsCtx(ctx context.Context) error { return app.Bootstrap(ctx, g.cfg) }

func topicsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "topics",
		Short: "Create or reconcile mcpwatch's Kafka topics (idempotent)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.ensureTopics(cmd); err != nil {
				return err
			}
			for _, s := range kafkaio.Topics(g.topics(), g.partitions, g.replication, g.retentionHours) {
				fmt.Fprintf(cmd.OutOrStdout(), "%-32s partitions=%d cleanup.policy=%s\n", s.Name, s.Partitions, s.Configs["cleanup.policy"])
			}
			return nil
		},
	}
}
