package ledger

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// BenchmarkSeal is the ledger's CPU cost per entry: canonical encoding, SHA-256 and an Ed25519
// signature over a typical action record.
func BenchmarkSeal(b *testing.B) {
	key := mustKey(b)
	raw := testChain(b, key, 1)[0]
	var e event.AuditEntry
	if err := event.DecodeAudit(raw, &e); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := Seal(&e, key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify is the verifier's cost per entry read from an export: decode, hash, signature
// and link.
func BenchmarkVerify(b *testing.B) {
	key := mustKey(b)
	chain := testChain(b, key, 1000)
	keys := map[string]ed25519.PublicKey{key.ID: key.Public}
	b.ReportAllocs()
	for b.Loop() {
		v := NewVerifier(keys)
		for _, raw := range chain {
			v.Add(raw)
		}
		if !v.rep.OK() {
			b.Fatal(v.rep.Breaks)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(chain)), "ns/entry")
}

// BenchmarkLedgerKafka chains 5,000 actions already on the real Kafka's actions topic and
// reports entries per second end to end: session start (fence, tail read), fetch, seal, and one
// transaction per batch of 1,000 entries.
func BenchmarkLedgerKafka(b *testing.B) {
	brokers := testenv.Kafka(b)
	const n = 5000
	var total time.Duration
	b.StopTimer()
	for range b.N {
		h := newHarness(b, brokers, testenv.Topics(b))
		for range n / 500 {
			h.actions(500)
		}
		l := h.ledger(func(o *Options) { o.MaxBatch = 1000 })
		b.StartTimer()
		start := time.Now()
		stop, _ := startLedger(l)
		for l.seq.Load() < n {
			time.Sleep(time.Millisecond)
		}
		total += time.Since(start)
		b.StopTimer()
		if err := stop(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "entries/s")
}
