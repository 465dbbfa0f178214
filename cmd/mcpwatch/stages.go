package main

import (
	"bytes"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/mcpwatch/mcpwatch/detectors"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/internal/event"
	"github.com/mcpwatch/mcpwatch/internal/obs"
	"github.com/mcpwatch/mcpwatch/internal/pipeline"
	"github.com/mcpwatch/mcpwatch/response"
)

// stageFlags are the knobs of the pipeline stages and the gateway.
type stageFlags struct {
	rate    detectors.RateConfig
	respond response.Config
	gateway mcp.Config
	tokens  string
}

func (s *stageFlags) registerStages(cmd *cobra.Command) {
	s.rate = detectors.DefaultRateConfig()
	s.respond = response.DefaultConfig()
	f := cmd.Flags()
	f.DurationVar(&s.rate.Window, "rate-window", s.rate.Window, "detector: sliding window for call rates")
	f.Float64Var(&s.rate.Baseline, "rate-baseline", s.rate.Baseline, "detector: calls/s considered normal (score 0)")
	f.Float64Var(&s.rate.Ceiling, "rate-ceiling", s.rate.Ceiling, "detector: calls/s that score 100")
	f.Float64Var(&s.rate.Threshold, "finding-threshold", s.rate.Threshold, "detector: lowest score that yields a finding")
	f.Float64Var(&s.respond.Threshold, "response-threshold", s.respond.Threshold, "responder: lowest finding score that revokes the principal")
	f.StringVar(&s.respond.WebhookURL, "webhook-url", env("MCPWATCH_WEBHOOK_URL", ""), "responder: alert webhook URL (signing secret from $MCPWATCH_WEBHOOK_SECRET)")
	f.DurationVar(&s.respond.RevokeFor, "revoke-for", s.respond.RevokeFor, "responder: how long a revocation lasts (0: until lifted)")
}

func (s *stageFlags) registerGateway(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&s.gateway.Listen, "listen", env("MCPWATCH_GATEWAY_LISTEN", "127.0.0.1:8787"), "gateway: address to serve MCP on")
	f.StringVar(&s.gateway.Upstream, "upstream", env("MCPWATCH_GATEWAY_UPSTREAM", ""), "gateway: upstream MCP server's Streamable HTTP URL")
	f.StringVar(&s.gateway.ServerName, "server-name", env("MCPWATCH_GATEWAY_SERVER", "default"), "gateway: name of the upstream in events and quarantines")
	f.StringVar(&s.gateway.Tenant, "tenant", env("MCPWATCH_TENANT", mcp.DefaultTenant), "gateway: tenant of its principals")
	f.StringVar(&s.tokens, "tokens-file", env("MCPWATCH_GATEWAY_TOKENS", ""), "gateway: YAML list of bearer tokens (sha256 or token) and their principals")
}

// tokenFile is one entry of --tokens-file.
type tokenFile struct {
	SHA256   string   `yaml:"sha256"`
	Token    string   `yaml:"token"`
	Subject  string   `yaml:"sub"`
	ClientID string   `yaml:"client_id"`
	Roles    []string `yaml:"roles"`
}

func loadTokens(path string) ([]mcp.StaticToken, error) {
	if path == "" {
		return nil, fmt.Errorf("gateway: --tokens-file is required (default deny: no tokens, no access)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var entries []tokenFile
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	out := make([]mcp.StaticToken, 0, len(entries))
	for _, e := range entries {
		out = append(out, mcp.StaticToken{SHA256: e.SHA256, Token: e.Token,
			Principal: event.Principal{Subject: e.Subject, ClientID: e.ClientID, Roles: e.Roles}})
	}
	return out, nil
}

func (g *globals) pipelineConfig(sf *stageFlags, stages []string) pipeline.Config {
	cfg := pipeline.Config{
		Kafka: g.kafkaConfig(""), Topics: g.topics(), Partitions: g.partitions, Replication: g.replication,
		RetentionHours: g.retentionHours, ClickHouse: g.clickhouse(), Stages: stages, GroupPrefix: g.topicPrefix,
	}
	if sf != nil {
		cfg.Rate, cfg.Respond = sf.rate, sf.respond
		cfg.Respond.WebhookSecret = os.Getenv("MCPWATCH_WEBHOOK_SECRET")
	}
	return cfg
}

// runPipeline builds and runs cfg with the operability endpoints until the command's context ends.
func (g *globals) runPipeline(cmd *cobra.Command, cfg pipeline.Config) error {
	ctx := cmd.Context()
	p, err := pipeline.Build(ctx, cfg, g.reg, g.hl, g.log)
	if err != nil {
		return err
	}
	addr, err := obs.Serve(ctx, g.metricsAddr, g.reg, g.hl, g.log)
	if err != nil {
		return err
	}
	if addr != "" {
		g.log.Info("operability endpoints", "metrics", "http://"+addr+"/metrics", "ready", "http://"+addr+"/readyz")
	}
	return p.Run(ctx)
}

func stageCmd(g *globals, name, short string) *cobra.Command {
	sf := &stageFlags{}
	cmd := &cobra.Command{
		Use:   name,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.runPipeline(cmd, g.pipelineConfig(sf, []string{name}))
		},
	}
	sf.registerStages(cmd)
	return cmd
}

func gatewayCmd(g *globals) *cobra.Command {
	sf := &stageFlags{}
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run the MCP audit gateway in front of one upstream Streamable HTTP server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tokens, err := loadTokens(sf.tokens)
			if err != nil {
				return err
			}
			cfg := g.pipelineConfig(nil, nil)
			gw := sf.gateway
			gw.Tokens = tokens
			cfg.Gateway = &gw
			return g.runPipeline(cmd, cfg)
		},
	}
	sf.registerGateway(cmd)
	return cmd
}

func runCmd(g *globals) *cobra.Command {
	sf := &stageFlags{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run every pipeline stage in one process (and the gateway when --upstream is set)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := g.pipelineConfig(sf, pipeline.AllStages)
			if sf.gateway.Upstream != "" {
				tokens, err := loadTokens(sf.tokens)
				if err != nil {
					return err
				}
				gw := sf.gateway
				gw.Tokens = tokens
				cfg.Gateway = &gw
			}
			return g.runPipeline(cmd, cfg)
		},
	}
	sf.registerStages(cmd)
	sf.registerGateway(cmd)
	return cmd
}

func addStageCommands(root *cobra.Command, g *globals) {
	root.AddCommand(
		gatewayCmd(g),
		stageCmd(g, pipeline.StageProcess, "Normalize raw events to CEF (raw topic → events topic)"),
		stageCmd(g, pipeline.StageSink, "Store events, findings and actions in ClickHouse"),
		stageCmd(g, pipeline.StageDetect, "Score per-principal call rates and publish findings"),
		stageCmd(g, pipeline.StageRespond, "Revoke principals and send signed webhooks for findings over the threshold"),
		runCmd(g),
		demoCmd(g),
		queryCmd(g),
	)
}
