package mcp

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// sseUpstream serves the given chunks as one event stream, flushing after each and, before each,
// waiting for a signal on gate if gate is not nil.
func sseUpstream(t *testing.T, gate chan struct{}, chunks ...string) *upstream {
	t.Helper()
	up := &upstream{}
	up.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up.hits.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for _, c := range chunks {
			if gate != nil {
				select {
				case <-gate:
				case <-r.Context().Done():
					return
				}
			}
			_, _ = io.WriteString(w, c)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(up.srv.Close)
	return up
}

// The bytes a client receives are exactly the upstream's, however the stream is framed: the
// gateway audits the stream, it does not rewrite it.
func TestSSEPassthroughExact(t *testing.T) {
	chunks := []string{
		": stream start\r\n\r\n",
		"id: 1\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",",
		"\"params\":{\"progressToken\":1,\"progress\":1}}\r\n\r",
		"\nevent: custom\ndata: not json-rpc\n\n",
		"data: {\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"method\":\"sampling/createMessage\",\"params\":{}}\n\n",
		"data: " + strings.Repeat("x", 3000) + "\n\n", // larger than the limit: passed unread
		"data: {\"jsonrpc\":\"2.0\",\n",
		"data: \"id\":5,\"result\":{}}\n\n",
		"data: trailing, never dispatched",
	}
	up := sseUpstream(t, nil, chunks...)
	f := newFixture(t, up, func(c *Config) { c.MaxBodyBytes = 1024 })
	r := f.post(t, aliceToken, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"slow"}}`)
	if want := strings.Join(chunks, ""); r.body != want {
		t.Fatalf("stream changed in transit:\n got %q\nwant %q", r.body, want)
	}
	evs := f.events.waitFor(t, "the response", has(event.DirResponse, "tools/call", 1))
	if n := find(evs, event.DirNotification, "notifications/progress"); len(n) != 1 {
		t.Fatalf("progress:\n%s", dump(evs))
	}
	if s := find(evs, event.DirServerRequest, "sampling/createMessage"); len(s) != 1 || s[0].Correlation.RequestID != `"s1"` {
		t.Fatalf("server request:\n%s", dump(evs))
	}
	var uninspected int
	for _, e := range evs {
		if e.Attributes["mcp.uninspected"] == "true" && e.Outcome.Result == event.ResultAllowed && e.Size.Response > 3000 {
			uninspected++
		}
	}
	if uninspected != 1 {
		t.Fatalf("the oversized event must be audited as uninspected once:\n%s", dump(evs))
	}
	checkPaired(t, evs)
}

// Only an event's data is held back until it is complete; keep-alive comments go straight
// through, or clients with idle timeouts would drop quiet streams. The upstream here sends the
// response only after the client has read the keep-alive.
func TestSSEKeepAliveNotHeld(t *testing.T) {
	gate := make(chan struct{}, 2)
	gate <- struct{}{}
	up := sseUpstream(t, gate, ": keep-alive\n\n", "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n")
	f := newFixture(t, up)
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	req.Header.Set("Authorization", "Bearer "+aliceToken)
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	read := make(chan string, 1)
	go func() {
		line, _ := br.ReadString('\n')
		read <- line
	}()
	select {
	case line := <-read:
		if line != ": keep-alive\n" {
			t.Fatalf("first line %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("keep-alive held back by the gateway")
	}
	gate <- struct{}{}
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), `"result":{}`) {
		t.Fatalf("rest of stream %q", rest)
	}
}

// JSON answers too large or too broken to read are passed on as they are and audited as such,
// paired with the request they answer when there is just one.
func TestJSONResponseUnread(t *testing.T) {
	for name, tc := range map[string]struct {
		body   string
		result event.Result
		attr   string
	}{
		"too large": {`{"jsonrpc":"2.0","id":1,"result":{"blob":"` + strings.Repeat("b", 2048) + `"}}`, event.ResultAllowed, "true"},
		"garbage":   {`{"jsonrpc":"2.0","id":1,"result":`, event.ResultError, ""},
	} {
		t.Run(name, func(t *testing.T) {
			up := &upstream{}
			up.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, tc.body)
			}))
			t.Cleanup(up.srv.Close)
			f := newFixture(t, up, func(c *Config) { c.MaxBodyBytes = 1024 })
			if r := f.post(t, aliceToken, `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///big"}}`); r.body != tc.body {
				t.Fatal("response changed in transit")
			}
			evs := f.events.waitFor(t, "the response", func(evs []*event.Event) bool { return len(evs) >= 2 })
			e := evs[1]
			if e.MCP.Direction != event.DirResponse || e.Outcome.Result != tc.result || e.Attributes["mcp.uninspected"] != tc.attr ||
				e.Size.Response != len(tc.body) {
				t.Fatalf("audit:\n%s", dump(evs))
			}
		})
	}
}
