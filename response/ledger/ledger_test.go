package ledger

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	goleak.VerifyTestMain(m)
}

// fast lowers metadata caching so that tests do not wait 5s on a retry.
var fast = []kgo.Opt{kgo.MetadataMinAge(100 * time.Millisecond), kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond })}

type harness struct {
	t       testing.TB
	brokers []string
	names   event.Topics
	key     *Key
	prod    *kgo.Client
	n       int // actions produced
}

func newHarness(t testing.TB, brokers []string, names event.Topics) *harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prod, err := kafkaio.NewClient(kafkaio.Config{Brokers: brokers, ClientID: "test"}, fast...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	if err := kafkaio.EnsureTopics(ctx, prod, kafkaio.Topics(names, 3, 1, 24)); err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, brokers: brokers, names: names, key: mustKey(t), prod: prod}
}

func (h *harness) kcfg() kafkaio.Config {
	return kafkaio.Config{Brokers: h.brokers, ClientID: "test-ledger"}
}

// actions publishes n new actions across principals (so across partitions) and returns their ids.
func (h *harness) actions(n int) []string {
	h.t.Helper()
	var ids []string
	var recs []*kgo.Record
	for range n {
		h.n++
		a := &event.Action{ID: event.NewID(), Time: time.Now(), Tenant: "acme", Subject: fmt.Sprintf("user-%d", h.n%11),
			Kind: event.ActionRevoke, Target: "revoke/subject/acme/x", Status: "succeeded", Actor: "playbook:test", Reason: "test"}
		r, err := kafkaio.RecordOf(h.names.Actions, event.PrincipalKey(a.Tenant, event.Principal{Subject: a.Subject}), a)
		if err != nil {
			h.t.Fatal(err)
		}
		ids = append(ids, a.ID)
		recs = append(recs, r)
	}
	h.produce(recs...)
	return ids
}

func (h *harness) produce(recs ...*kgo.Record) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) ledger(mod func(*Options)) *Ledger {
	h.t.Helper()
	o := Options{Kafka: h.kcfg(), Topics: h.names, TransactionalID: h.names.Audit + ".ledger", Key: h.key,
		MaxBatch: 7, ClientOpts: fast, Logger: slog.New(slog.DiscardHandler)}
	if testing.Verbose() {
		o.Logger = slog.Default()
	}
	if mod != nil {
		mod(&o)
	}
	l, err := New(o)
	if err != nil {
		h.t.Fatal(err)
	}
	return l
}

// start runs l until the returned stop is called; stop returns Run's error.
func startLedger(l *Ledger) (stop func() error, done <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- l.Run(ctx) }()
	return func() error { cancel(); return <-ch }, ch
}

// chain waits until the audit topic holds want entries and returns the verification report and
// the action ids chained, in chain order.
func (h *harness) chain(want int) (Report, []string) {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var ids []string
		v := NewVerifier(map[string]ed25519.PublicKey{h.key.ID: h.key.Public})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := KafkaSource(h.kcfg(), h.names.Audit, fast...)(ctx, func(raw []byte) error {
			v.Add(raw)
			var e event.AuditEntry
			if event.DecodeAudit(raw, &e) == nil {
				ids = append(ids, e.ActionID)
			}
			return nil
		})
		cancel()
		if err != nil {
			h.t.Fatal(err)
		}
		rep := v.Report()
		if rep.Entries >= want || time.Now().After(deadline) {
			return rep, ids
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// exactlyOnce fails unless the chain verifies and holds every id of want exactly once (plus
// extra entries with no id: malformed records, chained as found).
func (h *harness) exactlyOnce(want []string, extra int) {
	h.t.Helper()
	rep, got := h.chain(len(want) + extra)
	if !rep.OK() {
		h.t.Fatalf("chain broken: %v", rep.Breaks)
	}
	if rep.Entries != len(want)+extra {
		h.t.Fatalf("chain holds %d entries, want %d", rep.Entries, len(want)+extra)
	}
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	for _, id := range want {
		if seen[id] != 1 {
			h.t.Fatalf("action %s chained %d times", id, seen[id])
		}
	}
	if seen[""] != extra {
		h.t.Fatalf("%d entries without an action id, want %d", seen[""], extra)
	}
}

// The ledger's promise under faults, on any Kafka: every action on the actions topic is chained
// exactly once, in a chain that verifies, although (1) a transaction is abandoned between produce
// and commit, as when the process dies there, (2) the ledger is stopped and a new one resumes,
// (3) an at-least-once producer publishes an action twice, and (4) a malformed record is on the
// topic. If this fails, the audit trail loses or doubles entries when the response side needs it
// most: during an incident with failures.
func testLedgerFaults(t *testing.T, brokers []string, names event.Topics) {
	h := newHarness(t, brokers, names)
	want := h.actions(20)
	var crashes atomic.Int32
	l := h.ledger(func(o *Options) {
		o.beforeCommit = func(es []*event.AuditEntry) error {
			if es[0].Seq > 7 && crashes.Add(1) <= 2 { // the second and third batches, twice
				return errors.New("simulated crash between produce and commit")
			}
			return nil
		}
	})
	stop, _ := startLedger(l)
	h.exactlyOnce(want, 0)
	if crashes.Load() < 2 {
		t.Fatalf("only %d simulated crashes happened", crashes.Load())
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// While no ledger runs: more actions, one of them published twice, and a malformed record.
	more := h.actions(9)
	want = append(want, more...)
	dup := &event.Action{ID: more[3], Time: time.Now(), Tenant: "acme", Kind: event.ActionNotify, Status: "succeeded"}
	r, err := kafkaio.RecordOf(names.Actions, "acme/user-3", dup)
	if err != nil {
		t.Fatal(err)
	}
	h.produce(r, &kgo.Record{Topic: names.Actions, Key: []byte("acme/x"), Value: []byte(`{"schema":1,`)})
	stop, _ = startLedger(h.ledger(nil))
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	h.exactlyOnce(want, 1)
	want = append(want, h.actions(5)...)
	h.exactlyOnce(want, 1)
}

// Fast variant on kfake's in-process cluster (transactions included).
func TestLedgerFaultsKfake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testLedgerFaults(t, c.ListenAddrs(), event.TopicNames("kfake"))
}

// The same against the real Kafka.
func TestLedgerFaults(t *testing.T) {
	testLedgerFaults(t, testenv.Kafka(t), testenv.Topics(t))
}

// A second instance with the same transactional id fences the first, which stops with
// ErrFenced instead of writing on; the second carries the chain on without a gap or a double.
// If this fails, two ledgers (a zombie after a failover) can interleave two chains in the topic.
func TestLedgerFenced(t *testing.T) {
	brokers := testenv.Kafka(t)
	h := newHarness(t, brokers, testenv.Topics(t))
	want := h.actions(10)
	stopA, doneA := startLedger(h.ledger(nil))
	h.exactlyOnce(want, 0)
	stopB, _ := startLedger(h.ledger(nil))
	defer func() {
		if err := stopB(); err != nil {
			t.Error(err)
		}
	}()
	// A notices on its next transaction, at the latest: give both something to chain.
	for i := 0; ; i++ {
		want = append(want, h.actions(3)...)
		select {
		case err := <-doneA:
			if !errors.Is(err, ErrFenced) {
				t.Fatalf("first ledger ended with %v, want ErrFenced", err)
			}
			h.exactlyOnce(want, 0)
			return
		case <-time.After(500 * time.Millisecond):
		}
		if i == 40 {
			_ = stopA()
			t.Fatal("the first ledger was not fenced")
		}
	}
}

// A tail that does not verify stops the ledger (fail closed) with ErrBrokenTail: a forged entry
// appended to the audit topic by someone without the key. If this fails, the ledger would sign
// its next entries on top of a forgery, lending it the key's authority.
func TestLedgerRefusesBrokenTail(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := newHarness(t, c.ListenAddrs(), event.TopicNames("kfake"))
	stop, _ := startLedger(h.ledger(nil))
	h.exactlyOnce(h.actions(3), 0)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	forged := testChain(t, mustKey(t), 5)[4]
	h.produce(&kgo.Record{Topic: h.names.Audit, Value: forged})
	_, done := startLedger(h.ledger(nil))
	select {
	case err := <-done:
		if !errors.Is(err, ErrBrokenTail) {
			t.Fatalf("ledger ended with %v, want ErrBrokenTail", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the ledger kept running on a forged tail")
	}
}
