package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/forward"
	"github.com/mcpwatch/mcpwatch/forward/syslog"
	"github.com/mcpwatch/mcpwatch/internal/obs"
	"github.com/mcpwatch/mcpwatch/processors"
)

// forwardFlags configure `mcpwatch forward`.
type forwardFlags struct {
	client      syslog.Config
	facility    string
	hostname    string
	sdID        string
	bom         bool
	maxMessage  int
	findings    bool
	minSeverity int
	sources     string
	batch       int
	fromEnd     bool
}

func forwardCmd(g *globals) *cobra.Command {
	ff := &forwardFlags{}
	cmd := &cobra.Command{
		Use:   "forward",
		Short: "Send normalized events (and findings) to a SIEM as CEF over syslog (RFC 5424, TLS 1.3)",
		Long: `Reads the normalized events topic (and, with --findings, the findings topic) and sends each
record's CEF line to a syslog collector as an RFC 5424 message in an octet-counted frame
(RFC 6587/RFC 5425) over TLS 1.3. Offsets are committed only after a batch was written to a live
connection: delivery is at-least-once up to the collector's socket. See docs/siem.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runForward(cmd, g, ff) },
	}
	ff.register(cmd)
	return cmd
}

func (ff *forwardFlags) register(cmd *cobra.Command) {
	host, _ := os.Hostname()
	f := cmd.Flags()
	c := &ff.client
	f.StringVar(&c.Address, "syslog-address", env("MCPWATCH_SYSLOG_ADDRESS", ""), "collector host:port (TLS syslog is usually port 6514)")
	f.StringVar(&c.Transport, "syslog-transport", env("MCPWATCH_SYSLOG_TRANSPORT", syslog.TransportTLS), "tls (TLS 1.3) or tcp (plaintext: audit records readable on the wire; only for a collector on the same host)")
	f.StringVar(&c.CAFile, "syslog-ca-file", env("MCPWATCH_SYSLOG_CA_FILE", ""), "PEM bundle of the CAs that sign the collector's certificate (default: system roots)")
	f.StringVar(&c.ServerName, "syslog-server-name", env("MCPWATCH_SYSLOG_SERVER_NAME", ""), "name the collector's certificate must carry (default: the host of --syslog-address)")
	f.StringVar(&c.CertFile, "syslog-cert-file", env("MCPWATCH_SYSLOG_CERT_FILE", ""), "client certificate (PEM) for mutual TLS")
	f.StringVar(&c.KeyFile, "syslog-key-file", env("MCPWATCH_SYSLOG_KEY_FILE", ""), "client certificate's private key (PEM)")
	f.DurationVar(&c.DialTimeout, "syslog-dial-timeout", 10*time.Second, "timeout of connect plus TLS handshake")
	f.DurationVar(&c.WriteTimeout, "syslog-write-timeout", 30*time.Second, "timeout of each write (64 KiB) to the collector")
	f.DurationVar(&c.MaxBackoff, "syslog-max-backoff", 30*time.Second, "longest wait between reconnection attempts")
	f.StringVar(&ff.facility, "syslog-facility", env("MCPWATCH_SYSLOG_FACILITY", "audit"), "syslog facility: a name (audit, authpriv, local0..local7, ...) or 0-23")
	f.StringVar(&ff.hostname, "syslog-hostname", env("MCPWATCH_SYSLOG_HOSTNAME", host), "HOSTNAME of the messages")
	f.StringVar(&ff.sdID, "syslog-sd-id", env("MCPWATCH_SYSLOG_SD_ID", ""), "add structured data [SD-ID id=\"<event id>\"]; SD-ID is name@<your IANA enterprise number> (default: no structured data)")
	f.BoolVar(&ff.bom, "syslog-bom", false, "start MSG with a UTF-8 BOM (RFC 5424 6.4); most CEF parsers reject it")
	f.IntVar(&ff.maxMessage, "syslog-max-message", syslog.DefaultMaxMessage, "largest message in octets; larger records are dead-lettered (configure the collector to accept this size)")
	f.BoolVar(&ff.findings, "findings", false, "forward the findings topic too")
	f.IntVar(&ff.minSeverity, "min-severity", 0, "forward only events and findings of at least this CEF severity (0-10)")
	f.StringVar(&ff.sources, "sources", "", "forward only events from these sources, comma-separated (mcp, otel, kernel; default all)")
	f.IntVar(&ff.batch, "batch", 1000, "records per batch (one write, one commit); bounds memory to batch x --syslog-max-message")
	f.BoolVar(&ff.fromEnd, "from-end", false, "a new consumer group starts at the end of the topics instead of the start (skips the retained backlog)")
}

// config turns the flags into the handler's and the client's configuration.
func (ff *forwardFlags) config(topics event.Topics) (forward.Config, error) {
	fac, err := syslog.ParseFacility(ff.facility)
	if err != nil {
		return forward.Config{}, err
	}
	fm, err := syslog.NewFormatter(syslog.FormatterConfig{Facility: fac, Hostname: ff.hostname,
		ProcID: strconv.Itoa(os.Getpid()), SDID: ff.sdID, BOM: ff.bom, MaxMessage: ff.maxMessage})
	if err != nil {
		return forward.Config{}, err
	}
	srcs, err := forward.ParseSources(ff.sources)
	if err != nil {
		return forward.Config{}, fmt.Errorf("--sources: %w", err)
	}
	cfg := forward.Config{Topics: topics, Formatter: fm, MinSeverity: ff.minSeverity, Sources: srcs}
	if ff.findings {
		cfg.FindingCEF = processors.FindingCEF
	}
	if err := cfg.Validate(); err != nil {
		return forward.Config{}, err
	}
	if ff.client.Address == "" {
		return forward.Config{}, fmt.Errorf("--syslog-address is required (host:port of the collector)")
	}
	return cfg, ff.client.Validate()
}

func runForward(cmd *cobra.Command, g *globals, ff *forwardFlags) error {
	ctx := cmd.Context()
	cfg, err := ff.config(g.topics())
	if err != nil {
		return err
	}
	if ff.client.Transport == syslog.TransportTCP {
		g.log.Warn("SYSLOG WITHOUT TLS (--syslog-transport tcp): audit records cross the network in plaintext; " +
			"use it only for a collector on the same host")
	}
	client, err := syslog.NewClient(ff.client, syslog.WithLogger(g.log), syslog.WithRegisterer(g.reg),
		syslog.WithState(func(err error) { g.hl.Set("syslog-collector", err) }))
	if err != nil {
		return err
	}
	defer client.Close()
	if err := g.ensureTopics(cmd); err != nil {
		return err
	}
	h, err := forward.NewHandler(cfg, client, g.reg, g.log)
	if err != nil {
		return err
	}
	group := g.topicPrefix + "-" + forward.StageName
	if g.topicPrefix == "" {
		group = "mcpwatch-" + forward.StageName
	}
	st, err := forward.NewStage(g.kafkaConfig(""), forward.StageOptions{Group: group, MaxPoll: ff.batch, FromEnd: ff.fromEnd}, h, g.reg, g.log)
	if err != nil {
		return err
	}
	addr, err := obs.Serve(ctx, g.metricsAddr, g.reg, g.hl, g.log)
	if err != nil {
		st.Client().Close()
		return err
	}
	if addr != "" {
		g.log.Info("operability endpoints", "metrics", "http://"+addr+"/metrics", "ready", "http://"+addr+"/readyz")
	}
	g.log.Info("forwarding to syslog", "collector", ff.client.Address, "transport", ff.client.Transport,
		"topics", cfg.InputTopics(), "min_severity", cfg.MinSeverity)
	return st.Run(ctx)
}
