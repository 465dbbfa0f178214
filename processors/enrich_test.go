package processors

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/component/componenttest"
	"github.com/mcpwatch/mcpwatch/enrich"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

func rawCall(subject string, roles []string, tool string) event.Event {
	return event.Event{
		Schema: event.SchemaVersion, ID: event.NewID(), Time: time.Now().UTC(), Source: event.SourceMCP, Tenant: "acme",
		Principal: event.Principal{Subject: subject, ClientID: "demo-agent", Roles: roles},
		MCP:       &event.MCP{Direction: event.DirRequest, Method: "tools/call", Tool: tool},
		Target:    event.Target{Server: "acme-data"},
		Outcome:   event.Outcome{Result: event.ResultAllowed},
	}
}

// enrichRun drives the real process stage, built by its factory, with the demo's catalog and directory: raw events
// in, and on the events topic each arrives with its classes, sensitivity, department, peer group
// and directory status, and the CEF line shows the directory's roles where the token had none.
// If this breaks, the enrichment never reaches detectors, ClickHouse or the SIEM.
func enrichRun(t *testing.T, brokers []string, names event.Topics) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kafkaio.NewClient(kafkaio.Config{Brokers: brokers, ClientID: "test"}, kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkaio.EnsureTopics(ctx, cl, kafkaio.Topics(names, 3, 1, 24)); err != nil {
		t.Fatal(err)
	}
	forged := rawCall("mallory", []string{"analyst"}, "send_email")
	forged.Principal.Department = "finance" // a source cannot set it
	forged.Attributes = map[string]string{enrich.AttrDirectory: "known"}
	masked := rawCall("carol", nil, "send_email")
	masked.DataClasses = []string{"pii"} // the gateway's masking found personal data
	kernel := event.Event{Schema: event.SchemaVersion, ID: event.NewID(), Time: time.Now().UTC(), Source: event.SourceKernel,
		Tenant: "acme", Process: &event.Process{PID: 42, Comm: "cat", Syscall: "openat", Path: "/etc/shadow"},
		Outcome: event.Outcome{Result: event.ResultAllowed}}
	type want struct {
		classes     []string
		sensitivity float64
		dept, peer  string
		status      string
		roles       []string
		cefHas      string
	}
	cases := map[string]struct {
		e event.Event
		w want
	}{
		"known analyst querying the sales db": {rawCall("alice", []string{"analyst"}, "db_query"),
			want{[]string{"finance", "pii"}, 0.7, "finance", "finance-analysts", "known", []string{"analyst"}, "spriv=analyst"}},
		"token without roles takes the directory's": {rawCall("carol", nil, "file_read"),
			want{[]string{"finance"}, 0.6, "sales", "sales-analysts", "known", []string{"analyst", "reporting"}, "spriv=analyst,reporting"}},
		"unknown principal, forged fields dropped": {forged,
			want{[]string{"egress"}, 0.4, "", "", "unknown", []string{"analyst"}, ""}},
		"source classes kept and weighed": {masked,
			want{[]string{"egress", "pii"}, 0.6, "sales", "sales-analysts", "known", []string{"analyst", "reporting"}, ""}},
		"unmatched tool gets the default": {rawCall("bob", []string{"analyst"}, "weather"),
			want{nil, 0.1, "finance", "finance-analysts", "known", []string{"analyst"}, ""}},
		"kernel read of a host secret": {kernel,
			want{[]string{"secret"}, 1, "", "", "", nil, ""}},
	}
	byID := map[string]string{}
	var recs []*kgo.Record
	for name, c := range cases {
		byID[c.e.ID] = name
		r, err := kafkaio.RecordOf(names.Raw, event.PrincipalKey(c.e.Tenant, c.e.Principal), &c.e)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// The stage as the host builds it, from its config section.
	cfg := DefaultConfig()
	cfg.CatalogFile, cfg.DirectoryFile = "../deploy/local/catalog.yaml", "../deploy/local/directory.yaml"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	st, err := NewFactory().Create(ctx, componenttest.Settings(t, Type, brokers, names), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- st.Run(sctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	rc, err := kafkaio.NewClient(kafkaio.Config{Brokers: brokers, ClientID: "reader"},
		kgo.ConsumeTopics(names.Events), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got []*kgo.Record
	for len(got) < len(cases) && ctx.Err() == nil {
		got = append(got, rc.PollFetches(ctx).Records()...)
	}
	if len(got) != len(cases) {
		t.Fatalf("%d normalized events, want %d", len(got), len(cases))
	}
	for _, r := range got {
		var e event.Event
		if err := event.Decode(r.Value, &e); err != nil {
			t.Fatal(err)
		}
		name := byID[e.ID]
		w := cases[name].w
		p := e.Principal
		switch {
		case e.Normalized == nil || e.Normalized.Signature == "":
			t.Errorf("%s: not normalized", name)
		case !slices.Equal(e.DataClasses, w.classes):
			t.Errorf("%s: classes %v, want %v", name, e.DataClasses, w.classes)
		case e.Normalized.Sensitivity != w.sensitivity:
			t.Errorf("%s: sensitivity %v, want %v", name, e.Normalized.Sensitivity, w.sensitivity)
		case p.Department != w.dept || p.PeerGroup != w.peer:
			t.Errorf("%s: department %q peer group %q, want %q %q", name, p.Department, p.PeerGroup, w.dept, w.peer)
		case e.Attributes[enrich.AttrDirectory] != w.status:
			t.Errorf("%s: directory status %q, want %q", name, e.Attributes[enrich.AttrDirectory], w.status)
		case !slices.Equal(p.Roles, w.roles):
			t.Errorf("%s: roles %v, want %v", name, p.Roles, w.roles)
		case w.cefHas != "" && !strings.Contains(e.Normalized.CEF, w.cefHas):
			t.Errorf("%s: CEF %q lacks %q", name, e.Normalized.CEF, w.cefHas)
		}
	}
}

func TestEnrichStageFake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	enrichRun(t, c.ListenAddrs(), event.TopicNames("fake"))
}

func TestEnrichStageKafka(t *testing.T) {
	enrichRun(t, testenv.Kafka(t), testenv.Topics(t))
}
