package storage

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
)

func auditRecord(t testing.TB, seq uint64, hash string, action []byte) *kgo.Record {
	t.Helper()
	e := &event.AuditEntry{Seq: seq, TimeMS: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC).UnixMilli() + int64(seq),
		PrevHash: strings.Repeat("0", 64), KeyID: "0123456789abcdef", Partition: 1, Offset: int64(seq), Next: []int64{0, int64(seq) + 1},
		ActionID: fmt.Sprint("a-", seq), Action: action, Hash: hash, Sig: strings.Repeat("ab", 64)}
	b, err := event.EncodeAudit(e)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: testTopics.Audit, Value: b}
}

// Audit entries land in response_audit with the action's tenant, kind and actor copied out, and
// ReadAudit gives back each entry's raw bytes in seq order: a replayed copy once, two different
// entries under one seq both (a fork the verifier must see), and a record that is no audit entry
// is dead-lettered. If this fails, `mcpwatch response verify --from-clickhouse` verifies
// something other than what the ledger wrote, or hides a forged second entry.
func TestSinkWritesAuditEntries(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	s := newSink(t, conn, db)
	a := sampleAction("a-1")
	a.Actor = "operator:alice"
	action, err := event.Encode(&a)
	if err != nil {
		t.Fatal(err)
	}
	h := func(c string) string { return strings.Repeat(c, 64) }
	recs := []*kgo.Record{auditRecord(t, 2, h("b"), []byte("not an action")), auditRecord(t, 1, h("a"), action), auditRecord(t, 3, h("c"), action)}
	bad := &kgo.Record{Topic: testTopics.Audit, Value: []byte(`{"schema":1,"seq":0}`)}
	for range 2 { // a replay of the same batch
		res, err := s.Handle(ctx, append(recs, bad))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Dead) != 1 || res.Dead[0].Record != bad {
			t.Fatalf("dead letters %+v, want the record with no seq", res.Dead)
		}
	}
	fork := auditRecord(t, 3, h("d"), action)
	if res, err := s.Handle(ctx, []*kgo.Record{fork}); err != nil || len(res.Dead) != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	var got []string
	if err := ReadAudit(ctx, conn, db, func(raw []byte) error { got = append(got, string(raw)); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []string{string(recs[1].Value), string(recs[0].Value), string(recs[2].Value), string(fork.Value)}
	if len(got) != len(want) {
		t.Fatalf("read %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("entry %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	var tenant, kind, actor, keyID string
	var part int32
	if err := conn.QueryRow(ctx, "SELECT tenant, kind, actor, key_id, source_partition FROM "+db+".response_audit WHERE seq = 1 LIMIT 1").
		Scan(&tenant, &kind, &actor, &keyID, &part); err != nil {
		t.Fatal(err)
	}
	if tenant != a.Tenant || kind != string(a.Kind) || actor != "operator:alice" || keyID != "0123456789abcdef" || part != 1 {
		t.Fatalf("row: %q %q %q %q %d", tenant, kind, actor, keyID, part)
	}
}
