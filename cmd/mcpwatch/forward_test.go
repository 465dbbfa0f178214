package main

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/forward"
	"github.com/mcpwatch/mcpwatch/processors"
)

// The forward command refuses configurations that would send nowhere, weaken TLS silently or
// produce messages a collector cannot parse, and says which flag to fix.
func TestForwardFlags(t *testing.T) {
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"no address":          {nil, "--syslog-address is required"},
		"tls options on tcp":  {[]string{"--syslog-address=h:514", "--syslog-transport=tcp", "--syslog-ca-file=ca.pem"}, "TLS settings given with plain TCP"},
		"unknown transport":   {[]string{"--syslog-address=h:514", "--syslog-transport=udp"}, "want tls or tcp"},
		"cert without key":    {[]string{"--syslog-address=h:6514", "--syslog-cert-file=c.pem"}, "both the certificate and the key"},
		"bad facility":        {[]string{"--syslog-address=h:6514", "--syslog-facility=local9"}, "syslog facility"},
		"bad source":          {[]string{"--syslog-address=h:6514", "--sources=mcp,smtp"}, "--sources"},
		"bad severity":        {[]string{"--syslog-address=h:6514", "--min-severity=11"}, "minimum severity"},
		"hostname with space": {[]string{"--syslog-address=h:6514", "--syslog-hostname=my host"}, "hostname"},
		"sd-id without PEN":   {[]string{"--syslog-address=h:6514", "--syslog-sd-id=mcpwatch"}, "enterprise number"},
	} {
		t.Run(name, func(t *testing.T) {
			ff := flagsOf(t, c.args)
			_, err := ff.config(event.TopicNames(""))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
		})
	}
	ff := flagsOf(t, []string{"--syslog-address=siem.example.com:6514", "--findings", "--sources=mcp,kernel", "--min-severity=4"})
	cfg, err := ff.config(event.TopicNames("acme"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.InputTopics(); len(got) != 2 || got[1] != "acme.findings.v1" || cfg.MinSeverity != 4 || len(cfg.Sources) != 2 {
		t.Fatalf("config %+v, topics %v", cfg, got)
	}
}

// flagsOf parses args as the forward command's flags.
func flagsOf(t *testing.T, args []string) *forwardFlags {
	t.Helper()
	ff := &forwardFlags{}
	cmd := &cobra.Command{}
	ff.register(cmd)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	return ff
}

// The finding renderer agrees with the forward stage's header reader: signature and
// severity (from the score) come back out of the line.
func TestFindingCEF(t *testing.T) {
	line := processors.FindingCEF(event.Finding{ID: "f1", Time: time.Unix(1737536772, 0), Detector: "rate", Score: 86,
		Summary: "burst | x=y", Tenant: "acme", Principal: event.Principal{Subject: "mallory"}})
	sig, sev, ok := forward.Header(line)
	if !ok || sig != "MCP-6001" || sev != 9 {
		t.Fatalf("Header(%q) = %q %d %v", line, sig, sev, ok)
	}
	for _, want := range []string{"externalId=f1", "suser=mallory", `msg=burst | x\=y`, "cs1=rate", "cfp1=86"} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
}
