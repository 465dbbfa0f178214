package mcpwatchds

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/mcpwatch/mcpwatch/internal/approval"
	"github.com/mcpwatch/mcpwatch/internal/chtest"
)

// withJSON returns pc with extra keys merged into its datasource jsonData.
func withJSON(t *testing.T, pc backend.PluginContext, extra map[string]any) backend.PluginContext {
	t.Helper()
	m := map[string]any{}
	if err := json.Unmarshal(pc.DataSourceInstanceSettings.JSONData, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range extra {
		m[k] = v
	}
	is := *pc.DataSourceInstanceSettings
	is.JSONData, _ = json.Marshal(m)
	is.ID++ // a new instance: the SDK caches instances by datasource
	pc.DataSourceInstanceSettings = &is
	return pc
}

// GET /approvals, called over gRPC on the plugin binary, lists the pending requests of the real
// approvals API (internal/approval's server over a store holding one request): the request's id,
// rule, approvers and state reach Grafana. A request without a Grafana user is refused with 401,
// and a datasource without approvalsUrl answers 501. If it failed, the findings board could not
// show what waits for a vote, or anonymous callers could read pending calls.
func TestApprovalsOverGRPC(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := approval.NewKeyring(map[string]ed25519.PublicKey{"ann": pub})
	if err != nil {
		t.Fatal(err)
	}
	store := approval.NewStore(ring)
	now := time.Now().UTC().Truncate(time.Second)
	req := &approval.Request{ID: "apr-1", Time: now, Tenant: "acme", Requester: "gateway:gw-1", Rule: "wire-transfer",
		Call:      &approval.Call{Subject: "mallory", Server: "bank", Tool: "transfer", ArgsSHA256: strings.Repeat("ab", 32)},
		Approvers: []string{"ann"}, Required: 1, Deadline: now.Add(10 * time.Minute), OnTimeout: approval.Deny}
	key, value, err := approval.EncodeRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Apply([]byte(key), value); err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(approval.NewServer(store, ring, nil, nil, nil).Handler())
	t.Cleanup(api.Close)

	db := chtest.New(t)
	g := launch(t)
	base := pluginContext(t, db, "", "Viewer")
	pc := withJSON(t, base, map[string]any{"approvalsUrl": api.URL})
	get := func(pc backend.PluginContext) (int, string) {
		t.Helper()
		rreq := &backend.CallResourceRequest{PluginContext: pc, Path: "approvals", Method: "GET", URL: "approvals"}
		stream, err := g.res.CallResource(context.Background(), backend.ToProto().CallResourceRequest(rreq))
		if err != nil {
			t.Fatalf("CallResource: %v", err)
		}
		var status int
		var out []byte
		for {
			m, err := stream.Recv()
			if err != nil {
				break
			}
			if m.Code != 0 {
				status = int(m.Code)
			}
			out = append(out, m.Body...)
		}
		return status, string(out)
	}
	st, out := get(pc)
	if st != 200 {
		t.Fatalf("GET /approvals: %d %s", st, out)
	}
	var list []approval.Status
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if len(list) != 1 || list[0].Request.ID != "apr-1" || list[0].State != approval.Pending ||
		list[0].Request.Rule != "wire-transfer" || list[0].Request.Call.Subject != "mallory" || list[0].Hash != approval.HashOf(value) {
		t.Errorf("approvals %s", out)
	}
	anon := pc
	anon.User = nil
	if st, out := get(anon); st != 401 {
		t.Errorf("GET /approvals without a user: %d %s; want 401", st, out)
	}
	if st, out := get(base); st != 501 || !strings.Contains(out, "approvalsUrl") {
		t.Errorf("GET /approvals without approvalsUrl: %d %s; want 501 naming approvalsUrl", st, out)
	}
}
