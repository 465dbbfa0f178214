package response

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/component/componenttest"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
	"github.com/mcpwatch/mcpwatch/response/notify"
)

// The notify stage under playbooks, as deployed: a finding matched by a playbook with
// `notify: soc` reaches the Slack channel as a Block Kit message carrying the finding's
// explanation and the playbook's other decisions, and is recorded as a notify action; a second
// finding inside the dedup window is recorded as suppressed and not posted. If this failed,
// playbooks could decide notifications that nobody receives, or page the SOC on every finding.
func testNotifyPlaybookStage(t *testing.T, brokers []string, names event.Topics) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := kafkaio.EnsureTopics(ctx, kafkaClient(t, brokers), kafkaio.Topics(names, 3, 1, 24)); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var posts []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("slack body is not JSON: %v", err)
		}
		mu.Lock()
		posts = append(posts, m)
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()

	path := filepath.Join(t.TempDir(), "playbooks.yaml")
	const src = `
playbooks:
  - name: contain
    match: {min_score: 80}
    actions:
      - revoke: subject
        expire_after: 1h
      - notify: soc
        dedup_window: 10m
`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Playbooks = path
	cfg.Channels = []notify.Channel{{Name: "soc", Type: notify.TypeSlack, Secret: component.SecretValue(srv.URL + "/services/T000/B000/XXXX")}}
	if !NewNotifyFactory().Enabled(&cfg) {
		t.Fatal("notify stage not enabled by playbooks and channels")
	}
	c, err := NewNotifyFactory().Create(ctx, componenttest.Settings(t, TypeNotify, brokers, names), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(sctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
		_ = c.Close()
	}()

	produce := func(f *event.Finding) {
		f.Time = time.Now()
		rec, err := kafkaio.RecordOf(names.Findings, event.PrincipalKey(f.Tenant, f.Principal), f)
		if err != nil {
			t.Fatal(err)
		}
		if err := kafkaClient(t, brokers).ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	actions := newReader(t, brokers, names.Actions)
	next := func() event.Action {
		var a event.Action
		if err := event.Decode(actions.next(1)[0].Value, &a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	f := finding(90)
	f.Explanation = "mallory made 300 calls in 10s, 150x the usual"
	produce(f)
	a := next()
	if a.Kind != event.ActionNotify || a.Status != StatusSucceeded || a.Playbook != "contain" || a.FindingID != f.ID ||
		!strings.HasPrefix(a.Target, "soc ") || strings.Contains(a.Target, "XXXX") {
		t.Fatalf("notify action %+v", a)
	}
	mu.Lock()
	body, _ := json.Marshal(posts)
	n := len(posts)
	mu.Unlock()
	if n != 1 || !strings.Contains(string(body), "150x the usual") || !strings.Contains(string(body), "revoke/subject/acme/mallory") {
		t.Fatalf("%d posts: %s", n, body)
	}
	produce(finding(91))
	if a := next(); a.Kind != event.ActionNotify || a.Status != StatusSuppressed {
		t.Fatalf("second notification inside the dedup window: %+v", a)
	}
	mu.Lock()
	n = len(posts)
	mu.Unlock()
	if n != 1 {
		t.Fatalf("%d posts, want the second one suppressed", n)
	}
}

func TestNotifyPlaybookStageFake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testNotifyPlaybookStage(t, c.ListenAddrs(), event.TopicNames("fake"))
}

func TestNotifyPlaybookStageKafka(t *testing.T) {
	testNotifyPlaybookStage(t, testenv.Kafka(t), testenv.Topics(t))
}

// Playbooks that notify a channel nobody configured are refused at start, with their names.
// If this failed, a typo in a channel name would silently drop every notification.
func TestNotifyMissingChannel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "playbooks.yaml")
	if err := os.WriteFile(path, []byte("playbooks:\n  - name: p\n    actions:\n      - notify: pager\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Playbooks = path
	cfg.Channels = []notify.Channel{{Name: "soc", Type: notify.TypeSlack, Secret: component.SecretValue("https://hooks.slack.com/services/T/B/X")}}
	_, err := NewNotifyFactory().Create(context.Background(), componenttest.Settings(t, TypeNotify, []string{"127.0.0.1:1"}, event.TopicNames("x")), &cfg)
	if err == nil || !strings.Contains(err.Error(), "p: pager") {
		t.Fatalf("error %v, want the missing channel named", err)
	}
}
