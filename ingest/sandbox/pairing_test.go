package sandbox

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"testing"
)

// pairingCase is a case of ingest/mcpwire/testdata/pairing.json (see there).
type pairingCase struct {
	Name      string
	Requests  []json.RawMessage
	Responses []json.RawMessage
	Want      []int
}

// TestPairingMatchesGateway drives the shared pairing cases (ids in varied encodings, answered
// under ids a server re-encoded) through the bridge's own pairing: each request registered by its
// own POST as the bridge reads it, each response routed as the server's output. The gateway's
// TestPairingMatchesBridge drives the same cases through the gateway, and both must give the
// cases' results. If it failed, the bridge would hand a response to another POST than the one the
// gateway in front pairs it with, leave a re-encoded answer undelivered (the client's call
// hangs), or refuse distinct ids as one.
func TestPairingMatchesGateway(t *testing.T) {
	b, err := os.ReadFile("../mcpwire/testdata/pairing.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []pairingCase
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			s := &session{b: &Bridge{log: slog.New(slog.DiscardHandler)}, sb: &Sandbox{id: "test"}, waiters: map[string]*waiter{}}
			waiters := make([]*waiter, len(tc.Requests))
			for i, id := range tc.Requests {
				msgs, _, perr := readClientBody(fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%s,"method":"tools/call","params":{"name":"t%d"}}`, id, i))
				if perr != nil {
					t.Fatalf("request %s: %v", id, perr)
				}
				waiters[i] = &waiter{pending: map[string]bool{}, ch: make(chan srvMsg, 16), done: make(chan struct{})}
				if _, inUse, err := s.register(waiters[i], msgs); err != nil || inUse != "" {
					t.Fatalf("request %s refused: in use %q, %v", id, inUse, err)
				}
			}
			got := make([]int, len(tc.Responses))
			for i, id := range tc.Responses {
				s.route([]byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":{}}`))
				got[i] = -1
				for j, wt := range waiters {
					select {
					case <-wt.ch:
						got[i] = j
					default:
					}
				}
			}
			if !slices.Equal(got, tc.Want) {
				t.Fatalf("paired %v, want %v", got, tc.Want)
			}
		})
	}
}
