package main

import (
	"slices"
	"testing"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/forward"
)

// The forward command's flags reach the forwarding stage's config section.
func TestForwardFlags(t *testing.T) {
	g, err := configFor(t, "forward", "--syslog-address=siem.example.com:6514", "--syslog-transport=tcp", "--findings",
		"--sources=mcp,kernel", "--min-severity=4", "--syslog-facility=local4", "--batch=10", "--from-end")
	if err != nil {
		t.Fatal(err)
	}
	c := g.cfg.Section("forward").(*forward.Config)
	if c.Syslog.Address != "siem.example.com:6514" || c.Syslog.Transport != "tcp" || !c.Findings || c.MinSeverity != 4 ||
		!slices.Equal(c.Sources, []event.Source{"mcp", "kernel"}) || c.Syslog.Facility != "local4" || c.Batch != 10 || !c.FromEnd {
		t.Fatalf("config %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := configFor(t, "forward", "--sources=mcp,smtp"); err == nil {
		t.Fatal("unknown source accepted")
	}
}
