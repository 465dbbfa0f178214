package response

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
	"github.com/mcpwatch/mcpwatch/response/notify"
)

// The notify stage is SIGKILLed while a webhook is in flight (the receiver holds the request),
// after the respond stage — a consumer group of its own — has long published the revocation: on
// restart the webhook is delivered again and the receiver, deduplicating by webhook id, processes
// it once; the next finding is delivered once; the notify action records carry one id per
// finding and channel. If this failed, a crash between the control record and the webhook would
// lose the alert, or a SOC would be paged twice for one finding.
func TestNotifyKilledMidDeliveryKafka(t *testing.T) {
	brokers := testenv.Kafka(t)
	names := testenv.Topics(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := kafkaio.EnsureTopics(ctx, kafkaClient(t, brokers), kafkaio.Topics(names, 1, 1, 24)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "playbooks.yaml")
	if err := os.WriteFile(path, []byte("playbooks:\n  - name: tell\n    match: {min_score: 80}\n    actions:\n      - notify: soc\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	processed := map[string]int{} // finding id → deliveries the receiver handed on
	rc, err := NewReceiver(secret, func(_ context.Context, d Delivery) error {
		mu.Lock()
		processed[d.ID]++
		mu.Unlock()
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	arrived := make(chan string, 8)
	release := make(chan struct{})
	var holdOnce sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		held := false
		holdOnce.Do(func() { held = true })
		if held { // the first attempt is in flight when the stage dies
			body, _ := io.ReadAll(r.Body)
			arrived <- r.Header.Get("webhook-id")
			select {
			case <-release:
			case <-r.Context().Done():
			}
			_ = body
			return // never answered: the process that sent it is gone
		}
		rc.ServeHTTP(w, r)
	}))
	defer srv.Close()
	defer close(release)

	spec, _ := json.Marshal(childConfig{Brokers: brokers, Topics: names, Group: "test-" + testenv.Unique(t), Playbooks: path,
		Stage: StageNotify, Channels: []notify.Channel{{Name: "soc", Type: notify.TypeWebhook, URL: srv.URL + "/hook",
			Secret: component.SecretFromEnv("MCPWATCH_TEST_SOC_SECRET")}}}) // a held value does not cross to the child
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+string(spec), "MCPWATCH_TEST_SOC_SECRET="+secret)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
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

	first := start()
	a := finding(90)
	produce(a)
	select {
	case id := <-arrived:
		if id != a.ID {
			t.Fatalf("webhook id %q, want the finding id %s", id, a.ID)
		}
	case <-ctx.Done():
		t.Fatal("the first webhook never arrived")
	}
	_ = first.Process.Signal(syscall.SIGKILL)
	_ = first.Wait()

	second := start()
	defer func() { _ = second.Process.Signal(syscall.SIGKILL); _ = second.Wait() }()
	b := finding(95)
	b.Principal.Subject = "trent"
	produce(b)
	for {
		mu.Lock()
		na, nb := processed[a.ID], processed[b.ID]
		mu.Unlock()
		if na >= 1 && nb >= 1 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("after the restart: finding A delivered %d times, B %d times", na, nb)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // room for a duplicate to show
	mu.Lock()
	if processed[a.ID] != 1 || processed[b.ID] != 1 {
		t.Errorf("deliveries processed: A %d, B %d; want each once", processed[a.ID], processed[b.ID])
	}
	mu.Unlock()

	ids := map[string]map[string]bool{} // finding → action ids
	actions := kafkaClient(t, brokers, kgo.ConsumeTopics(names.Actions), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for len(ids) < 2 && ctx.Err() == nil {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		for _, r := range actions.PollFetches(pctx).Records() {
			var act event.Action
			if err := event.Decode(r.Value, &act); err != nil {
				t.Fatal(err)
			}
			if act.Kind != event.ActionNotify || act.Status != StatusSucceeded {
				t.Errorf("notify action %+v", act)
			}
			if ids[act.FindingID] == nil {
				ids[act.FindingID] = map[string]bool{}
			}
			ids[act.FindingID][act.ID] = true
		}
		pcancel()
	}
	if len(ids[a.ID]) != 1 || len(ids[b.ID]) != 1 {
		t.Errorf("notify action ids per finding: A %v, B %v; want one each", ids[a.ID], ids[b.ID])
	}
}
