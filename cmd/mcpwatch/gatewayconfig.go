package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/ingest/sandbox"
	"github.com/mcpwatch/mcpwatch/internal/pipeline"
)

// gatewayFile is the gateway's --config file: its upstream servers by name and route, remote or
// launched in sandboxes. See docs/gateway.md and deploy/local/gateway.yaml.
type gatewayFile struct {
	Sandbox   sandboxFile    `yaml:"sandbox"`
	Upstreams []upstreamFile `yaml:"upstreams"`
}

// sandboxFile configures the sandboxes of every command upstream.
type sandboxFile struct {
	CgroupRoot    string        `yaml:"cgroup_root"`    // default: found in /proc/self/mountinfo
	CgroupParent  string        `yaml:"cgroup_parent"`  // default "mcpwatch"
	RequireLimits bool          `yaml:"require_limits"` // refuse sandboxes whose limits cannot apply
	StopGrace     time.Duration `yaml:"stop_grace"`
}

// upstreamFile is one upstream server: url, or command (+ args, env, dir, sandbox).
type upstreamFile struct {
	Name       string            `yaml:"name"`
	Route      string            `yaml:"route"`
	URL        string            `yaml:"url"`
	Command    string            `yaml:"command"`
	Args       []string          `yaml:"args"`
	Env        map[string]string `yaml:"env"`
	InheritEnv []string          `yaml:"inherit_env"`
	Dir        string            `yaml:"dir"`
	Sandbox    limitsFile        `yaml:"sandbox"`
}

// limitsFile are one command upstream's sandbox limits and session bounds.
type limitsFile struct {
	Memory      string        `yaml:"memory"` // bytes, or with a unit: 512MiB, 1G
	Pids        int64         `yaml:"pids"`
	CPUs        float64       `yaml:"cpus"`
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	MaxSessions int           `yaml:"max_sessions"`
	User        string        `yaml:"user"`    // a user name, or uid:gid; empty: the gateway's user
	Network     string        `yaml:"network"` // none: no network; empty: the host's
}

// defaultServerPath is the PATH of a sandboxed server whose env does not set one.
const defaultServerPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// loadGatewayFile reads and checks a gateway config file. Errors name the file and line.
func loadGatewayFile(path string) (*gatewayFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	return parseGatewayFile(path, b)
}

func parseGatewayFile(path string, b []byte) (*gatewayFile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f gatewayFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("gateway config %s: %w", path, err)
	}
	// A second pass for the line of each upstream, which semantic errors cite.
	var doc yaml.Node
	_ = yaml.Unmarshal(b, &doc)
	lines := upstreamLines(&doc)
	at := func(i int) string {
		if i < len(lines) {
			return fmt.Sprintf("%s:%d", path, lines[i])
		}
		return path
	}
	var errs []error
	if len(f.Upstreams) == 0 {
		errs = append(errs, fmt.Errorf("%s: no upstreams", path))
	}
	for i := range f.Upstreams {
		u := &f.Upstreams[i]
		where := at(i) + ": upstream"
		if u.Name != "" {
			where += " " + strconv.Quote(u.Name)
		}
		if err := u.check(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
	}
	if f.Sandbox.StopGrace < 0 {
		errs = append(errs, fmt.Errorf("%s: sandbox.stop_grace must not be negative", path))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &f, nil
}

// upstreamLines returns the line of each item of the top-level "upstreams" sequence.
func upstreamLines(doc *yaml.Node) []int {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "upstreams" && m.Content[i+1].Kind == yaml.SequenceNode {
			var out []int
			for _, it := range m.Content[i+1].Content {
				out = append(out, it.Line)
			}
			return out
		}
	}
	return nil
}

func (u *upstreamFile) check() error {
	var errs []error
	if u.Name == "" {
		errs = append(errs, errors.New("name is required (events, policies and quarantines name the server by it)"))
	}
	if !strings.HasPrefix(u.Route, "/") {
		errs = append(errs, fmt.Errorf("route %q: want a path prefix such as /mcp/files", u.Route))
	}
	switch {
	case u.URL == "" && u.Command == "":
		errs = append(errs, errors.New("give url (a remote Streamable HTTP server) or command (a stdio server to launch)"))
	case u.URL != "" && u.Command != "":
		errs = append(errs, errors.New("give url or command, not both"))
	case u.URL != "":
		if len(u.Args) > 0 || len(u.Env) > 0 || len(u.InheritEnv) > 0 || u.Dir != "" || u.Sandbox != (limitsFile{}) {
			errs = append(errs, errors.New("args, env, inherit_env, dir and sandbox apply to command upstreams only"))
		}
	default:
		if _, err := exec.LookPath(u.Command); err != nil {
			errs = append(errs, fmt.Errorf("command: %w", err))
		}
		if _, err := parseBytes(u.Sandbox.Memory); err != nil {
			errs = append(errs, fmt.Errorf("sandbox.memory: %w", err))
		}
		if u.Sandbox.Pids < 0 || u.Sandbox.CPUs < 0 || u.Sandbox.IdleTimeout < 0 || u.Sandbox.MaxSessions < 0 {
			errs = append(errs, errors.New("sandbox limits must not be negative"))
		}
		if _, err := parseUser(u.Sandbox.User); err != nil {
			errs = append(errs, fmt.Errorf("sandbox.user: %w", err))
		}
		if n := sandbox.Network(u.Sandbox.Network); n != sandbox.NetworkHost && n != sandbox.NetworkNone {
			errs = append(errs, fmt.Errorf("sandbox.network: %q: want none, or leave it out for the host's network", u.Sandbox.Network))
		}
		for k := range u.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				errs = append(errs, fmt.Errorf("env: invalid variable name %q", k))
			}
		}
	}
	return errors.Join(errs...)
}

// env is the whole environment of a command upstream's server: its env, the inherit_env
// variables from the gateway's environment, and a PATH.
func (u *upstreamFile) env() []string {
	vars := map[string]string{}
	for _, k := range u.InheritEnv {
		if v, ok := os.LookupEnv(k); ok {
			vars[k] = v
		}
	}
	for k, v := range u.Env {
		vars[k] = v
	}
	if _, ok := vars["PATH"]; !ok {
		vars["PATH"] = defaultServerPath
	}
	out := make([]string, 0, len(vars))
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// parseUser reads a sandbox user: a name from the user database, a numeric uid found there, or
// uid:gid. Empty is nil (the gateway's user).
func parseUser(s string) (*sandbox.User, error) {
	if s == "" {
		return nil, nil
	}
	id := func(v string) (uint32, error) {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%q is not a numeric id", v)
		}
		return uint32(n), nil
	}
	if us, gs, ok := strings.Cut(s, ":"); ok {
		uid, err := id(us)
		if err != nil {
			return nil, err
		}
		gid, err := id(gs)
		if err != nil {
			return nil, err
		}
		return &sandbox.User{UID: uid, GID: gid}, nil
	}
	lookup := user.Lookup
	if _, err := strconv.ParseUint(s, 10, 32); err == nil {
		lookup = user.LookupId
	}
	found, err := lookup(s)
	if err != nil {
		return nil, fmt.Errorf("%w (give a user of this host, or uid:gid)", err)
	}
	uid, err := id(found.Uid)
	if err != nil {
		return nil, err
	}
	gid, err := id(found.Gid)
	if err != nil {
		return nil, err
	}
	return &sandbox.User{UID: uid, GID: gid}, nil
}

// parseBytes reads a size: a number of bytes, or with a unit (K, M, G, T for powers of 1000;
// Ki, Mi, Gi, Ti for powers of 1024; an optional B). Empty is 0 (no limit).
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	num := strings.TrimRightFunc(s, func(r rune) bool { return (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') })
	unit := strings.ToLower(strings.TrimSpace(s[len(num):]))
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size (e.g. 512MiB, 1G, 1048576)", s)
	}
	mult := map[string]float64{"": 1, "b": 1,
		"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
		"ki": 1 << 10, "kib": 1 << 10, "mi": 1 << 20, "mib": 1 << 20, "gi": 1 << 30, "gib": 1 << 30, "ti": 1 << 40, "tib": 1 << 40}
	m, ok := mult[unit]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q (want K, M, G, T, Ki, Mi, Gi or Ti)", s, unit)
	}
	if n*m > float64(1<<62) {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(n * m), nil
}

// routes builds the router's routes. A sandbox manager is made when some upstream is a command;
// the caller closes it after the gateway has stopped.
func (f *gatewayFile) routes(log *slog.Logger) ([]mcp.Route, *sandbox.Manager, error) {
	var m *sandbox.Manager
	var out []mcp.Route
	for _, u := range f.Upstreams {
		rt := mcp.Route{Name: u.Name, Prefix: u.Route, URL: u.URL}
		if u.Command != "" {
			if m == nil {
				var err error
				m, err = sandbox.NewManager(sandbox.Options{Root: f.Sandbox.CgroupRoot, Parent: f.Sandbox.CgroupParent,
					StopGrace: f.Sandbox.StopGrace, RequireLimits: f.Sandbox.RequireLimits, Log: log})
				if err != nil {
					return nil, nil, fmt.Errorf("sandboxes for command upstreams: %w", err)
				}
			}
			mem, _ := parseBytes(u.Sandbox.Memory) // checked at load
			usr, _ := parseUser(u.Sandbox.User)
			if usr == nil && os.Geteuid() == 0 {
				log.Warn("sandboxed MCP server runs as root: set its sandbox.user", "upstream", u.Name)
			}
			b, err := sandbox.NewBridge(m, sandbox.BridgeConfig{
				Spec: sandbox.Spec{Server: u.Name, Path: u.Command, Args: u.Args, Env: u.env(), Dir: u.Dir,
					Limits: sandbox.Limits{MemoryMax: mem, PidsMax: u.Sandbox.Pids, CPUMax: u.Sandbox.CPUs},
					User:   usr, Network: sandbox.Network(u.Sandbox.Network)},
				IdleTimeout: u.Sandbox.IdleTimeout, MaxSessions: u.Sandbox.MaxSessions, Log: log,
			})
			if err != nil {
				for _, r := range out {
					if r.Bridge != nil {
						_ = r.Bridge.Close(context.Background())
					}
				}
				closeManager(m, log)
				return nil, nil, fmt.Errorf("upstream %s: %w", u.Name, err)
			}
			rt.Bridge = b
		}
		out = append(out, rt)
	}
	return out, m, nil
}

func closeManager(m *sandbox.Manager, log *slog.Logger) {
	if m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		log.Warn("sandboxes not all stopped", "err", err)
	}
}

// applyGatewayFile puts the routes of --config into cfg. The returned func releases the
// sandboxes; call it once the pipeline has stopped.
func (s *stageFlags) applyGatewayFile(g *globals, cfg *pipeline.Config) (func(), error) {
	if s.gatewayFile == "" {
		return func() {}, nil
	}
	if s.gateway.Upstream != "" {
		return nil, errors.New("gateway: --config and --upstream are exclusive (list the upstream in the config file)")
	}
	f, err := loadGatewayFile(s.gatewayFile)
	if err != nil {
		return nil, err
	}
	routes, m, err := f.routes(g.log)
	if err != nil {
		return nil, err
	}
	cfg.Routes = routes
	for _, rt := range routes {
		kind := "url"
		if rt.Bridge != nil {
			kind = "sandboxed command"
		}
		g.log.Info("gateway route", "route", rt.Prefix, "server", rt.Name, "upstream", kind)
	}
	if m != nil {
		g.log.Info("sandboxes", "cgroup", m.Parent(), "controllers", m.Controllers())
	}
	return func() { closeManager(m, g.log) }, nil
}
