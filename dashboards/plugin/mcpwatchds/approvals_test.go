package mcpwatchds

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/mcpwatch/mcpwatch/internal/approval"
	"github.com/mcpwatch/mcpwatch/internal/chtest"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
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
	store, ring, value := pendingRequest(t, "apr-1")
	api := httptest.NewServer(approval.NewServer(store, ring, nil, nil, nil).Handler())
	t.Cleanup(api.Close)

	db := chtest.New(t)
	g := launch(t)
	base := pluginContext(t, db, "", "Viewer")
	pc := withJSON(t, base, map[string]any{"approvalsUrl": api.URL})
	get := func(pc backend.PluginContext) (int, string) {
		t.Helper()
		return g.resource(t, pc, "GET", "approvals", nil)
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

var secureBump atomic.Int64

// withSecure returns pc with extra secureJsonData, as a new instance.
func withSecure(pc backend.PluginContext, extra map[string]string) backend.PluginContext {
	is := *pc.DataSourceInstanceSettings
	sec := map[string]string{}
	for k, v := range is.DecryptedSecureJSONData {
		sec[k] = v
	}
	for k, v := range extra {
		sec[k] = v
	}
	is.DecryptedSecureJSONData = sec
	is.ID += 100 + secureBump.Add(1) // a new instance each time
	pc.DataSourceInstanceSettings = &is
	return pc
}

// An approvals API that requires client certificates (approvals-serve --client-ca) is read by
// the plugin binary, over gRPC, with the CA and client certificate from secureJsonData; without
// the client certificate the handshake is refused and Grafana gets 502 with the reason; a plain
// http:// URL with TLS settings is refused as a configuration error. If it failed, a SOC that
// closes the approvals API to operators' certificates would lose the Grafana approvals list, or
// the plugin would silently talk to it without TLS.
func TestApprovalsOverMTLS(t *testing.T) {
	store, ring, _ := pendingRequest(t, "apr-tls")
	dir := t.TempDir()
	ca := testenv.NewCA(t, dir, "ops")
	srvCert, srvKey := ca.Server(t, "approvals")
	cliCert, cliKey := ca.Client(t, "grafana")
	tc, err := approval.ServerTLSConfig(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	tc.Certificates = []tls.Certificate{pair}
	api := httptest.NewUnstartedServer(approval.NewServer(store, ring, nil, nil, nil).Handler())
	api.TLS = tc
	api.StartTLS()
	t.Cleanup(api.Close)
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Clean(name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	db := chtest.New(t)
	g := launch(t)
	base := withJSON(t, pluginContext(t, db, "", "Viewer"), map[string]any{"approvalsUrl": api.URL})
	get := func(pc backend.PluginContext) (int, string) {
		t.Helper()
		return g.resource(t, pc, "GET", "approvals", nil)
	}
	good := withSecure(base, map[string]string{"approvalsCaCert": read(ca.CertFile),
		"approvalsClientCert": read(cliCert), "approvalsClientKey": read(cliKey)})
	st, out := get(good)
	var list []approval.Status
	if st != 200 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].Request.ID != "apr-tls" {
		t.Fatalf("GET /approvals with the client certificate: %d %s", st, out)
	}
	noCert := withSecure(base, map[string]string{"approvalsCaCert": read(ca.CertFile)})
	if st, out := get(noCert); st != 502 || !strings.Contains(out, "certificate") {
		t.Errorf("GET /approvals without a client certificate: %d %s; want 502 naming the certificate", st, out)
	}
	plain := withSecure(withJSON(t, base, map[string]any{"approvalsUrl": strings.Replace(api.URL, "https://", "http://", 1)}),
		map[string]string{"approvalsCaCert": read(ca.CertFile)})
	if st, out := get(plain); st == 200 || !strings.Contains(out, "must be https") {
		t.Errorf("GET /approvals with TLS settings and an http URL: %d %s; want a settings error", st, out)
	}
}

// pendingRequest returns an approvals store holding one pending 1-of-1 request with id, the
// keyring of its approver ann, and the request's record value.
func pendingRequest(t *testing.T, id string) (*approval.Store, *approval.Keyring, []byte) {
	t.Helper()
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
	req := &approval.Request{ID: id, Time: now, Tenant: "acme", Requester: "gateway:gw-1", Rule: "wire-transfer",
		Call:      &approval.Call{Subject: "mallory", Server: "bank", Tool: "transfer", ArgsSHA256: strings.Repeat("ab", 32)},
		Approvers: []string{"ann"}, Required: 1, Deadline: now.Add(10 * time.Minute), OnTimeout: approval.Deny}
	key, value, err := approval.EncodeRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Apply([]byte(key), value); err != nil {
		t.Fatal(err)
	}
	return store, ring, value
}
