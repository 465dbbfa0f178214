package detectors

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/bench/detectload"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

const (
	benchPrincipals = 100_000
	benchWarm       = 1_000_000 // events before measuring: every principal seen, the busy ones mature
	benchBatch      = 500       // records per Handle, like a Kafka fetch
	benchChunk      = 1 << 16   // events generated (and encoded) at a time, outside the timer
)

// benchStage builds the stage's handler with the default config, a real metrics registry and a
// discarding logger, and feeds it benchWarm events in batches of benchBatch.
func benchStage(b *testing.B) (*handler, *detectload.Generator) {
	b.Helper()
	h, err := Build(event.TopicNames("bench"), DefaultConfig(), prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	gen := detectload.New(benchPrincipals, 1, 10*time.Microsecond) // 100,000 events/s of event time, the rate judged
	recs := make([]*kgo.Record, 0, benchBatch)
	for range benchWarm / benchBatch {
		recs = recs[:0]
		for range benchBatch {
			e := gen.Next()
			recs = append(recs, encode(b, &e))
		}
		if _, err := h.Handle(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	return h.(*handler), gen
}

// refill generates and encodes the next chunk of events into recs, outside the timer.
func refill(b *testing.B, gen *detectload.Generator, evs []event.Event, recs []*kgo.Record) []*kgo.Record {
	b.StopTimer()
	defer b.StartTimer()
	gen.Fill(evs)
	recs = recs[:0]
	for i := range evs {
		recs = append(recs, encode(b, &evs[i]))
	}
	return recs
}

func encode(b *testing.B, e *event.Event) *kgo.Record {
	r, err := kafkaio.RecordOf("bench.events", event.PrincipalKey(e.Tenant, e.Principal), e)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// BenchmarkDetectStage measures the whole detect path per event (one op is one event): the
// handler [Build] returns with the default config — the rate and ueba detectors and the scorer,
// with findings' evidence and explanations, score and profile records encoded for Kafka — over
// 100,000 principals after a warm-up of 1,000,000 events, on events as the process stage
// publishes them (internal/bench/detectload).
//
//   - decode: records in batches of 500, as the stage gets them from Kafka, JSON decode included.
//   - nodecode: the same events decoded beforehand: detectors, scorer and output encoding only,
//     so that decode's share is the difference.
//   - single: every record its own batch, each Handle timed with the monotonic clock; the
//     p50/p99/p999 of those times are the per-event latency (an upper bound: each includes the
//     per-batch checkpoint and metrics work that a 500-record batch shares).
//
// Event generation and encoding happen outside the timer, 65,536 events at a time.
func BenchmarkDetectStage(b *testing.B) {
	b.Run("decode", func(b *testing.B) {
		h, gen := benchStage(b)
		evs := make([]event.Event, benchChunk)
		recs := make([]*kgo.Record, 0, benchChunk)
		next := 0
		batch := make([]*kgo.Record, 0, benchBatch)
		flush := func() {
			if _, err := h.Handle(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
		b.ReportAllocs()
		for b.Loop() {
			if next == len(recs) {
				recs, next = refill(b, gen, evs, recs), 0
			}
			batch = append(batch, recs[next])
			next++
			if len(batch) == benchBatch {
				flush()
			}
		}
		flush()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("nodecode", func(b *testing.B) {
		h, gen := benchStage(b)
		evs := make([]event.Event, benchChunk)
		next, inBatch := len(evs), 0
		rec := &kgo.Record{}
		res := &kafkaio.Result{}
		flush := func() {
			h.mu.Lock()
			h.finish(res)
			h.mu.Unlock()
			res, inBatch = &kafkaio.Result{}, 0
		}
		b.ReportAllocs()
		for b.Loop() {
			if next == len(evs) {
				b.StopTimer()
				gen.Fill(evs)
				next = 0
				b.StartTimer()
			}
			h.mu.Lock()
			h.observe(rec, &evs[next], res)
			h.mu.Unlock()
			next++
			if inBatch++; inBatch == benchBatch {
				flush()
			}
		}
		flush()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("single", func(b *testing.B) {
		h, gen := benchStage(b)
		evs := make([]event.Event, benchChunk)
		recs := make([]*kgo.Record, 0, benchChunk)
		next := 0
		lat := make([]time.Duration, 0, 1<<20)
		one := make([]*kgo.Record, 1)
		b.ReportAllocs()
		for b.Loop() {
			if next == len(recs) {
				recs, next = refill(b, gen, evs, recs), 0
			}
			one[0] = recs[next]
			next++
			s := time.Now()
			if _, err := h.Handle(context.Background(), one); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(s))
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		slices.Sort(lat)
		for _, q := range []struct {
			unit string
			p    float64
		}{{"p50-ns/event", 0.50}, {"p99-ns/event", 0.99}, {"p999-ns/event", 0.999}} {
			b.ReportMetric(float64(lat[min(int(float64(len(lat))*q.p), len(lat)-1)].Nanoseconds()), q.unit)
		}
	})
}
