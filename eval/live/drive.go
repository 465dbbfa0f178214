package live

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpwatch/mcpwatch/eval/traffic"
	"github.com/mcpwatch/mcpwatch/internal/demo"
	"github.com/mcpwatch/mcpwatch/policy"
)

func companyPolicy() (*policy.Policy, error) {
	return policy.Load(bytes.NewReader(traffic.PolicyYAML()), "eval-policy.yaml")
}

// callStats is what the clients saw.
type callStats struct {
	mu                      sync.Mutex
	issued, refused, failed int
	firstErr                error
}

// drive issues the test-phase calls through the gateway at their times moved by shift: one Go
// SDK client session per principal, session and server (an MCP session is one server's), opened at its first call with the call's
// client name and version, user agent and source address; each call in its own goroutine, so a
// slow answer does not delay the session's next call.
func drive(ctx context.Context, gwURL string, calls []traffic.Call, shift time.Duration, toks *tokens, ups *servers, log *slog.Logger) *callStats {
	type key struct{ principal, session, server string }
	sessions := map[key][]*traffic.Call{}
	var order []key
	for i := range calls {
		k := key{calls[i].Principal, calls[i].Session, calls[i].Server}
		if sessions[k] == nil {
			order = append(order, k)
		}
		sessions[k] = append(sessions[k], &calls[i])
	}
	st := &callStats{}
	fail := func(err error) {
		st.mu.Lock()
		defer st.mu.Unlock()
		st.failed++
		if st.firstErr == nil {
			st.firstErr = err
		}
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}
	defer transport.CloseIdleConnections()
	var wg sync.WaitGroup
	for _, k := range order {
		cs := sessions[k]
		wg.Go(func() {
			first := cs[0]
			if !sleepUntil(ctx, first.Time.Add(shift)) {
				return
			}
			hc := &http.Client{Transport: demo.Transport(toks.secret[first.TokenID], demo.Machine{UserAgent: first.UserAgent, Addr: first.SrcIP}, transport),
				Timeout: 30 * time.Second}
			cl := sdk.NewClient(&sdk.Implementation{Name: first.Client, Version: first.Version}, nil)
			s, err := cl.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: gwURL + "/" + first.Server + "/mcp", HTTPClient: hc,
				MaxRetries: -1, DisableStandaloneSSE: true}, nil)
			if err != nil {
				fail(err)
				return
			}
			defer s.Close()
			var calls sync.WaitGroup
			for _, c := range cs {
				if !sleepUntil(ctx, c.Time.Add(shift)) {
					break
				}
				calls.Go(func() { st.call(ctx, s, c, ups, log) })
			}
			calls.Wait()
		})
	}
	wg.Wait()
	return st
}

// call issues one call on s and counts it.
func (st *callStats) call(ctx context.Context, s *sdk.ClientSession, c *traffic.Call, ups *servers, log *slog.Logger) {
	var err error
	switch c.Method {
	case "tools/list":
		if c.ChangedTool != "" {
			ups.change(c.Server, c.ChangedTool)
		}
		_, err = s.ListTools(ctx, nil)
	case "tools/call":
		cancel := ups.plan(c)
		_, err = s.CallTool(ctx, &sdk.CallToolParams{Name: c.Tool, Arguments: json.RawMessage(c.Arguments)})
		if err != nil {
			cancel()
		}
	case "resources/read":
		cancel := ups.plan(c)
		_, err = s.ReadResource(ctx, &sdk.ReadResourceParams{URI: c.Resource})
		if err != nil {
			cancel()
		}
	case "prompts/get":
		var args map[string]string
		_ = json.Unmarshal(c.Arguments, &args)
		cancel := ups.plan(c)
		_, err = s.GetPrompt(ctx, &sdk.GetPromptParams{Name: c.Prompt, Arguments: args})
		if err != nil {
			cancel()
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.issued++
	if err != nil {
		// A refusal is the gateway's answer (policy): the call reached it and was audited.
		st.refused++
		log.Debug("call refused", "principal", c.Principal, "method", c.Method, "tool", c.Tool, "err", err)
	}
}

// sleepUntil waits until t; false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(time.Until(t)):
		return true
	}
}
