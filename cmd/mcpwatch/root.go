package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/obs"
	"github.com/mcpwatch/mcpwatch/storage"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// globals are the flags every subcommand shares. Defaults come from MCPWATCH_* environment
// variables, so `eval "$(deploy/local/stack.sh env)"` configures everything; passwords are read
// only from the environment, never from flags, so they do not show in `ps`.
type globals struct {
	kafka          string
	topicPrefix    string
	partitions     int32
	replication    int16
	retentionHours int
	chAddr         string
	chDatabase     string
	chUser         string
	logFormat      string
	logLevel       string
	metricsAddr    string

	log *slog.Logger
	reg *prometheus.Registry
	hl  *obs.Health
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil {
		return v
	}
	return def
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "mcpwatch",
		Short:         "Security audit and anomaly detection for MCP traffic",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			log, err := obs.NewLogger(g.logFormat, g.logLevel)
			if err != nil {
				return err
			}
			g.log, g.reg, g.hl = log, obs.NewRegistry(), obs.NewHealth()
			return nil
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&g.kafka, "kafka", env("MCPWATCH_KAFKA_BROKERS", "127.0.0.1:19092"), "Kafka brokers, comma-separated ($MCPWATCH_KAFKA_BROKERS)")
	f.StringVar(&g.topicPrefix, "topic-prefix", env("MCPWATCH_TOPIC_PREFIX", event.DefaultTopicPrefix), "prefix of every topic name")
	f.Int32Var(&g.partitions, "partitions", int32(envInt("MCPWATCH_PARTITIONS", 3)), "partitions of new event topics")
	f.Int16Var(&g.replication, "replication", int16(envInt("MCPWATCH_REPLICATION", 1)), "replication factor of new topics")
	f.IntVar(&g.retentionHours, "retention-hours", envInt("MCPWATCH_RETENTION_HOURS", 168), "retention of event topics")
	f.StringVar(&g.chAddr, "clickhouse", env("MCPWATCH_CLICKHOUSE_ADDR", "127.0.0.1:19000"), "ClickHouse native address ($MCPWATCH_CLICKHOUSE_ADDR)")
	f.StringVar(&g.chDatabase, "clickhouse-database", env("MCPWATCH_CLICKHOUSE_DATABASE", "mcpwatch"), "ClickHouse database")
	f.StringVar(&g.chUser, "clickhouse-user", env("MCPWATCH_CLICKHOUSE_USER", "mcpwatch"), "ClickHouse writer user (password from $MCPWATCH_CLICKHOUSE_PASSWORD)")
	f.StringVar(&g.logFormat, "log-format", env("MCPWATCH_LOG_FORMAT", "text"), "log format: text or json")
	f.StringVar(&g.logLevel, "log-level", env("MCPWATCH_LOG_LEVEL", "info"), "log level: debug, info, warn, error")
	f.StringVar(&g.metricsAddr, "metrics-addr", env("MCPWATCH_METRICS_ADDR", "127.0.0.1:9464"), "address for /metrics, /healthz, /readyz (empty disables)")

	root.AddCommand(topicsCmd(g), migrateCmd(g), policyCmd(), benchCmd(g), toolsCmd(), forwardCmd(g))
	root.AddCommand(retentionCmd(g))
	addStageCommands(root, g)
	return root
}

func (g *globals) topics() event.Topics { return event.TopicNames(g.topicPrefix) }

func (g *globals) kafkaConfig(clientID string) kafkaio.Config {
	return kafkaio.Config{Brokers: kafkaio.ParseBrokers(g.kafka), ClientID: clientID, Logger: g.log}
}

func (g *globals) clickhouse() storage.Options {
	return storage.Options{Addr: g.chAddr, Database: g.chDatabase, User: g.chUser,
		Password: os.Getenv("MCPWATCH_CLICKHOUSE_PASSWORD")}
}

func (g *globals) clickhouseAdmin() storage.Options {
	return storage.Options{Addr: g.chAddr, Database: g.chDatabase,
		User:     env("MCPWATCH_CLICKHOUSE_ADMIN_USER", "default"),
		Password: os.Getenv("MCPWATCH_CLICKHOUSE_ADMIN_PASSWORD")}
}

func (g *globals) clickhouseRO() storage.Options {
	return storage.Options{Addr: g.chAddr, Database: g.chDatabase,
		User:     env("MCPWATCH_CLICKHOUSE_RO_USER", "mcpwatch_ro"),
		Password: os.Getenv("MCPWATCH_CLICKHOUSE_RO_PASSWORD")}
}

// ensureTopics bootstraps the topics; every stage calls it at start so order of start-up does not
// matter.
func (g *globals) ensureTopics(cmd *cobra.Command) error { return g.ensureTopicsCtx(cmd.Context()) }

func (g *globals) ensureTopicsCtx(ctx context.Context) error {
	cl, err := kafkaio.NewClient(g.kafkaConfig("mcpwatch-bootstrap"))
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := kafkaio.EnsureTopics(ctx, cl, kafkaio.Topics(g.topics(), g.partitions, g.replication, g.retentionHours)); err != nil {
		return fmt.Errorf("bootstrap topics: %w", err)
	}
	return nil
}

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
