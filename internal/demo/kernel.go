package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpwatch/mcpwatch/ingest/ebpf"
	"github.com/mcpwatch/mcpwatch/ingest/gateway"
	"github.com/mcpwatch/mcpwatch/ingest/sandbox"
	"github.com/mcpwatch/mcpwatch/storage"
)

// docsRoute is acme-docs' route at the gateway.
const docsRoute = "/docs/mcp"

// kernelActReady says why the third act cannot run here, or nil: it launches acme-docs in a
// cgroup v2 sandbox (root) watched by eBPF probes, with its egress refused by the egress
// programs; it loads and attaches both once to find out.
func kernelActReady(server []string, log *slog.Logger) error {
	if len(server) == 0 {
		return errors.New("no command to launch acme-docs with")
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (a cgroup v2 sandbox and eBPF probes)")
	}
	root, err := sandbox.FindCgroup2()
	if err != nil {
		return err
	}
	p, err := ebpf.Load(ebpf.Config{Registerer: prometheus.NewRegistry(), Log: log})
	if err != nil {
		return err
	}
	defer p.Close()
	// acme-docs runs with no egress allowed, which the gateway refuses to start without the
	// egress programs: attach them once to a throw-away cgroup to find out.
	cg := filepath.Join(root, "mcpwatch-demo-check-"+RandomHex(4))
	if err := os.Mkdir(cg, 0o755); err != nil {
		return fmt.Errorf("make a cgroup to check the egress programs: %w", err)
	}
	defer os.Remove(cg)
	eg, err := ebpf.NewEgress(p, ebpf.EgressConfig{Cgroup: cg, Log: log})
	if err != nil {
		return err
	}
	return eg.Close()
}

// docsUpstreams puts acme-data (by URL, at the route the first acts use) and acme-docs (a stdio
// command in a sandbox with no egress allowed, watched in the kernel) behind the gateway. The
// compromised dependency reads home+"/.ssh/id_ed25519", a key planted there.
func docsUpstreams(gwc *gateway.Config, dataURL string, server []string, home string) error {
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		return err
	}
	key := "-----BEGIN OPENSSH PRIVATE KEY-----\nmcpwatch demo: not a real key\n-----END OPENSSH PRIVATE KEY-----\n"
	if err := os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), []byte(key), 0o600); err != nil {
		return err
	}
	gwc.Upstream, gwc.ServerName = "", ""
	gwc.Upstreams = []gateway.Upstream{
		{Name: "acme-data", Route: "/mcp", URL: dataURL},
		{Name: DocsServerName, Route: docsRoute, Command: server[0], Args: server[1:],
			Env:    map[string]string{DocsServerEnv: "1", "HOME": home},
			Egress: &gateway.EgressRules{Allow: []string{}}},
	}
	// Each run its own parent cgroup: a second demo (or TestDemo) beside this one must not find
	// it held.
	gwc.Sandbox.CgroupParent, gwc.Sandbox.StopGrace = "mcpwatch-demo-"+RandomHex(4), time.Second
	gwc.EBPF.Enabled = gateway.EBPFOn
	return nil
}

// kernelAct is the demo's third act: user calls acme-docs' convert_document once; its
// compromised dependency runs a shell that reads the planted SSH key and tries to connect to a
// TEST-NET address, which the kernel refuses. It waits for the Sigma findings on the kernel
// events, the playbook's quarantine and the gateway's confirmed freeze, shows the user's next
// call on that session refused, and prints the forensic SQL (as the read-only user).
func kernelAct(ctx context.Context, out io.Writer, gatewayURL string, u User, ro storage.Options, db, since string) error {
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }
	began := time.Now()
	endpoint := strings.TrimSuffix(gatewayURL, "/mcp") + docsRoute
	say("\n== 6. Act 3: a compromised sandboxed server, seen in the kernel and quarantined")
	say("%s converts a document with %s (stdio server in a cgroup v2 sandbox, eBPF-watched, egress allow-list empty);", u.Name, DocsServerName)
	say("     its dependency is compromised: it runs a shell that reads ~/.ssh/id_ed25519 and connects to %s", ExfilAddr)
	s, err := Connect(ctx, endpoint, u, Workstation(u, "10.20.0.14"))
	if err != nil {
		return err
	}
	defer s.Close()
	res, err := s.CallTool(ctx, &sdk.CallToolParams{Name: "convert_document",
		Arguments: ConvertArgs{Document: "# Q3 board summary\nRevenue grew **12%** in APAC.", Format: "text"}})
	if err != nil {
		return fmt.Errorf("%s: convert_document: %w", u.Name, err)
	}
	say("%s's client got an ordinary answer: %q", u.Name, resultText(res))

	// The call names the sandbox; the rest follows from it.
	if s.ID() == "" {
		return fmt.Errorf("%s: the gateway gave the session no id: its sandbox cannot be found", u.Name)
	}
	sb, err := waitForValue(ctx, ro, fmt.Sprintf(
		"SELECT sandbox FROM %s.events FINAL WHERE tenant = '%s' AND subject = '%s' AND session_id = '%s' AND sandbox != '' AND time >= toDateTime('%s', 'UTC') LIMIT 1",
		db, Tenant, u.Name, s.ID(), since))
	if err != nil {
		return err
	}
	// The gateway records the freeze once the kernel confirms it (cgroup.events: frozen 1).
	latency, err := waitForValue(ctx, ro, fmt.Sprintf(
		"SELECT toString(round(latency_ms)) FROM %s.actions FINAL WHERE tenant = '%s' AND kind = 'quarantine' AND status = 'succeeded' AND target = '%s' AND actor LIKE 'gateway:%%' LIMIT 1",
		db, Tenant, sb))
	if err != nil {
		return fmt.Errorf("sandbox %s was never frozen: %w", sb, err)
	}
	say("the gateway froze sandbox %s %s ms after the playbook's quarantine control (confirmed from cgroup.events)", sb, latency)
	_, err = s.CallTool(ctx, &sdk.CallToolParams{Name: "convert_document", Arguments: ConvertArgs{Document: "# Q4 plan"}})
	if err == nil {
		return fmt.Errorf("%s's next call to the quarantined sandbox %s was answered", u.Name, sb)
	}
	say("%s's next call to %s (sandbox %s) was refused: %v", u.Name, DocsServerName, sb, err)
	for _, title := range []string{"Shell or Interpreter Spawned", "Credential File Opened", "Egress of a Sandboxed MCP Server Refused"} {
		if err := waitForRows(ctx, ro, fmt.Sprintf(
			"SELECT count() FROM %s.findings FINAL WHERE tenant = '%s' AND subject = '%s' AND detector = 'sigma' AND time >= toDateTime('%s', 'UTC') AND position(summary, '%s') > 0",
			db, Tenant, u.Name, since, title)); err != nil {
			return fmt.Errorf("no Sigma finding %q for %s: %w", title, u.Name, err)
		}
	}

	say("\nForensic SQL (as the read-only user %s)", ro.User)
	queries := []string{
		fmt.Sprintf(`-- the sandbox's timeline: the MCP call and what its server did in the kernel (the cookbook's
-- kernel queries; or: bin/mcpwatch investigate sandbox %s). A refused connect shows twice: the
-- attempt (the system call) and the kernel's refusal (egress:not_allowed).
SELECT time, source, subject, if(source = 'kernel', proc_syscall, method) AS what, proc_comm,
       multiIf(proc_syscall = 'execve', arrayStringConcat(proc_args, ' '), proc_syscall = 'connect',
               concat(dst_ip, ':', toString(dst_port)), source = 'kernel', proc_path, tool) AS detail,
       result, policy_rule
FROM %s.events FINAL
WHERE tenant = '%s' AND sandbox = '%s' AND (
      (source = 'mcp' AND method = 'tools/call')
   OR (source = 'kernel' AND proc_syscall IN ('execve', 'connect'))
   OR (source = 'kernel' AND proc_syscall IN ('open', 'openat', 'openat2') AND match(proc_path, '/\\.ssh/id_')))
ORDER BY time_ms`, sb, db, Tenant, sb),
		fmt.Sprintf(`-- kernel-activity-by-sandbox (docs/forensics.md)
SELECT proc_syscall, count() AS events, groupUniqArray(proc_comm) AS commands, countIf(result = 'denied') AS refused
FROM %s.events FINAL
WHERE tenant = '%s' AND sandbox = '%s' AND source = 'kernel'
GROUP BY proc_syscall ORDER BY proc_syscall`, db, Tenant, sb),
		fmt.Sprintf(`-- the shipped Sigma rules' findings on those kernel events, with their evidence
SELECT time, subject, round(score) AS score, explanation
FROM %s.findings FINAL
WHERE tenant = '%s' AND subject = '%s' AND detector = 'sigma' AND time >= toDateTime('%s', 'UTC')
ORDER BY time_ms LIMIT 1 BY summary`, db, Tenant, u.Name, since),
		fmt.Sprintf(`-- the response: the playbook's quarantine and notification, the gateway's confirmed freeze
-- (and a revocation of %s, had anything decided one: the server is compromised, not its caller)
SELECT time, kind, status, target, actor, reason, round(latency_ms) AS latency_ms
FROM %s.actions FINAL
WHERE tenant = '%s' AND time >= toDateTime('%s', 'UTC') AND status != 'suppressed' AND (target = '%s'
   OR target LIKE 'quarantine/sandbox/%%/%s' OR (kind = 'notify' AND actor = 'playbook:contain-compromised-server')
   OR target = 'revoke/subject/%s/%s')
ORDER BY time_ms LIMIT 1 BY kind, status, actor`, u.Name, db, Tenant, since, sb, sb, Tenant, u.Name),
	}
	for _, q := range queries {
		say("\n%s;", q)
		if err := query(ctx, ro, out, q); err != nil {
			return err
		}
	}
	say("\nact 3 took %s", time.Since(began).Round(100*time.Millisecond))
	return nil
}

// resultText is the text of a tool result, clipped for one line.
func resultText(res *sdk.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if t, ok := c.(*sdk.TextContent); ok {
			b.WriteString(t.Text)
		}
	}
	s := b.String()
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// waitForValue polls a one-value query as the read-only user until it returns a row.
func waitForValue(ctx context.Context, ro storage.Options, sql string) (string, error) {
	conn, err := storage.Open(ctx, ro)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	for {
		_, rows, err := storage.QueryTable(ctx, conn, sql)
		if err == nil && len(rows) == 1 && rows[0][0] != "" {
			return rows[0][0], nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for %q: %w (last error: %v)", sql, ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
