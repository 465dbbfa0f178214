package mcpwatchds

import (
	"context"
	"encoding/json"
	"flag"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/grpcplugin"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/experimental"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/chtest"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
	"github.com/mcpwatch/mcpwatch/response/ops"
)

var update = flag.Bool("update", false, "rewrite the golden frames in testdata")

// grafana is the Grafana side of the plugin protocol: it starts the built binary with
// hashicorp/go-plugin and the SDK's handshake, as Grafana's plugin manager does, and holds the
// gRPC clients of the data, diagnostics and resource services.
type grafana struct {
	data  pluginv2.DataClient
	diag  pluginv2.DiagnosticsClient
	res   pluginv2.ResourceClient
	agent *plugin.Client
}

func launch(t *testing.T) *grafana {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gpx_mcpwatch")
	build := exec.Command("go", "build", "-o", bin, "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the plugin: %v\n%s", err, out)
	}
	c := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: plugin.HandshakeConfig{ProtocolVersion: grpcplugin.ProtocolVersion,
			MagicCookieKey: grpcplugin.MagicCookieKey, MagicCookieValue: grpcplugin.MagicCookieValue},
		Plugins: map[string]plugin.Plugin{
			"data": &grpcplugin.DataGRPCPlugin{}, "diagnostics": &grpcplugin.DiagnosticsGRPCPlugin{},
			"resource": &grpcplugin.ResourceGRPCPlugin{},
		},
		Cmd:              exec.Command(bin),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hclog.NewNullLogger(),
	})
	t.Cleanup(c.Kill)
	rpc, err := c.Client()
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	g := &grafana{agent: c}
	for name, dst := range map[string]any{"data": &g.data, "diagnostics": &g.diag, "resource": &g.res} {
		raw, err := rpc.Dispense(name)
		if err != nil {
			t.Fatalf("dispense %s: %v", name, err)
		}
		switch p := dst.(type) {
		case *pluginv2.DataClient:
			*p = raw.(pluginv2.DataClient)
		case *pluginv2.DiagnosticsClient:
			*p = raw.(pluginv2.DiagnosticsClient)
		case *pluginv2.ResourceClient:
			*p = raw.(pluginv2.ResourceClient)
		}
	}
	return g
}

func pluginContext(t *testing.T, db *chtest.DB, prefix string, role string) backend.PluginContext {
	t.Helper()
	env := testenv.ClickHouse(t)
	js, _ := json.Marshal(map[string]any{"addr": env.Addr, "database": db.Name, "user": env.AdminUser,
		"maxExecutionSeconds": 20, "maxRows": 100, "kafkaBrokers": strings.Join(testenv.Kafka(t), ","), "topicPrefix": prefix})
	return backend.PluginContext{PluginID: PluginID,
		User: &backend.User{Login: "carol", Role: role},
		DataSourceInstanceSettings: &backend.DataSourceInstanceSettings{ID: 1, UID: "mcpwatch-soc", Type: PluginID,
			JSONData: js, DecryptedSecureJSONData: map[string]string{"password": env.AdminPassword}, Updated: time.Now()}}
}

// The plugin binary, started the way Grafana starts it, answers CheckHealth (read-only
// connection, tables present), QueryData for each typed query with frames equal to the goldens
// in testdata, a bad query with a downstream error, and CallResource: a Viewer's lift is refused
// with 403, an Editor's lift ends the control (tombstone on the control topic) and is recorded as
// an action by operator:grafana:carol. Any of these breaking would break the SOC boards or let a
// viewer lift a quarantine.
func TestPluginOverGRPC(t *testing.T) {
	db := chtest.New(t)
	seedInvestigation(t, db)
	topics := testenv.Topics(t)
	prefix := topicPrefixOf(t, topics)
	g := launch(t)
	ctx := context.Background()

	pc := pluginContext(t, db, prefix, "Editor")
	h, err := g.diag.CheckHealth(ctx, &pluginv2.CheckHealthRequest{PluginContext: backend.ToProto().PluginContext(pc)})
	if err != nil || h.Status != pluginv2.CheckHealthResponse_OK {
		t.Fatalf("CheckHealth: %v %v %s", err, h.GetStatus(), h.GetMessage())
	}

	tr := backend.TimeRange{From: seedDay, To: seedDay.Add(24 * time.Hour)}
	q := func(refID, typ string, body map[string]any) backend.DataQuery {
		js, _ := json.Marshal(body)
		return backend.DataQuery{RefID: refID, QueryType: typ, TimeRange: tr, JSON: js, MaxDataPoints: 100, Interval: time.Minute}
	}
	req := &backend.QueryDataRequest{PluginContext: pc, Queries: []backend.DataQuery{
		q("timeline", QueryPrincipalTimeline, map[string]any{"tenant": "acme", "value": "mallory"}),
		q("sandbox", QueryInvestigation, map[string]any{"subject": "sandbox", "tenant": "acme", "value": "sbx-7"}),
		q("explain", QueryScoreExplanation, map[string]any{"tenant": "$__all", "value": "mallory"}),
		q("ledger", QueryEpsilonLedger, map[string]any{}),
		q("bad", "drop_tables", map[string]any{}),
	}}
	pr, err := g.data.QueryData(ctx, backend.ToProto().QueryDataRequest(req))
	if err != nil {
		t.Fatalf("QueryData: %v", err)
	}
	resp, err := backend.FromProto().QueryDataResponse(pr)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"timeline", "sandbox", "explain", "ledger"} {
		r := resp.Responses[ref]
		if r.Error != nil {
			t.Fatalf("%s: %v", ref, r.Error)
		}
		if len(r.Frames) == 0 || r.Frames[0].Rows() == 0 {
			t.Errorf("%s: no rows", ref)
		}
		for _, f := range r.Frames {
			stable(f)
		}
		experimental.CheckGoldenJSONResponse(t, "testdata", ref, &r, *update)
	}
	if bad := resp.Responses["bad"]; bad.Error == nil || bad.ErrorSource != backend.ErrorSourceDownstream {
		t.Errorf("unknown queryType: error %v, source %q; want a downstream error", bad.Error, bad.ErrorSource)
	}

	// Operator action: a quarantine issued like `mcpwatch response quarantine` does.
	kc, err := kgo.NewClient(kgo.SeedBrokers(testenv.Kafka(t)...))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	if err := kafkaio.EnsureTopics(ctx, kc, kafkaio.Topics(topics, 1, 1, 1)); err != nil {
		t.Fatal(err)
	}
	c := ops.NewClient(kafkaio.Config{Brokers: testenv.Kafka(t)}, topics, nil)
	ctl, act, err := ops.PlanControl(ops.Request{Operator: "dave", Reason: "egress", Tenant: "acme",
		Kind: event.ControlQuarantine, Scope: event.ScopeSandbox, Value: "sbx-7", For: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Issue(ctx, ctl, act); err != nil {
		t.Fatal(err)
	}
	call := func(role string, body string) (int, string) {
		t.Helper()
		return g.resource(t, pluginContext(t, db, prefix, role), "POST", "lift", []byte(body))
	}
	body := `{"key": "` + ctl.Key() + `", "reason": "false positive, checked with the owner"}`
	if st, out := call("Viewer", body); st != 403 {
		t.Errorf("Viewer lift: %d %s; want 403", st, out)
	}
	if st, out := call("Editor", `{"key": "`+ctl.Key()+`"}`); st != 400 || !strings.Contains(out, "reason") {
		t.Errorf("lift without reason: %d %s; want 400 naming the reason", st, out)
	}
	st, out := call("Editor", body)
	if st != 200 {
		t.Fatalf("Editor lift: %d %s", st, out)
	}
	var lr LiftResponse
	if err := json.Unmarshal([]byte(out), &lr); err != nil || len(lr.Actions) != 1 {
		t.Fatalf("lift response %s: %v", out, err)
	}
	a := lr.Actions[0]
	if a.Kind != event.ActionLift || a.Actor != "operator:grafana:carol" || a.ControlID != ctl.ID || a.Target != ctl.Key() {
		t.Errorf("lift action %+v", a)
	}
	left, err := c.Controls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range left {
		if l.Key() == ctl.Key() {
			t.Errorf("control %s still in force after the lift", ctl.Key())
		}
	}
}

func topicPrefixOf(t *testing.T, topics event.Topics) string {
	t.Helper()
	for _, p := range []string{topics.Control} {
		for i := len(p); i > 0; i-- {
			if event.TopicNames(p[:i]) == topics {
				return p[:i]
			}
		}
	}
	t.Fatalf("no prefix gives %+v", topics)
	return ""
}

// stable replaces what differs from run to run (event ids) so frames can be compared to goldens.
func stable(f *data.Frame) {
	for _, fl := range f.Fields {
		if fl.Name == "id" || fl.Name == "event_ids" {
			for i := range fl.Len() {
				fl.Set(i, "<id>")
			}
		}
	}
}
