package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/ingest/sandbox"
)

// defaultServerPath is the PATH of a sandboxed server whose env does not set one.
const defaultServerPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// env is the whole environment of a command upstream's server: its env, the inherit_env
// variables from the gateway's environment, and a PATH.
func (u Upstream) env() []string {
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
// watcher, if not nil, is told of every sandbox cgroup (kernel monitoring).
func (c *Config) routes(log *slog.Logger, watcher sandbox.Watcher) ([]mcp.Route, *sandbox.Manager, error) {
	var m *sandbox.Manager
	var out []mcp.Route
	for _, u := range c.Upstreams {
		rt := mcp.Route{Name: u.Name, Prefix: u.Route, URL: u.URL}
		if u.Command != "" {
			if m == nil {
				var err error
				m, err = sandbox.NewManager(sandbox.Options{Root: c.Sandbox.CgroupRoot, Parent: c.Sandbox.CgroupParent,
					StopGrace: c.Sandbox.StopGrace, RequireLimits: c.Sandbox.RequireLimits, Watcher: watcher, Log: log})
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
