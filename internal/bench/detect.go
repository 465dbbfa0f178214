package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/detectors"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/bench/detectload"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// Harness modes of [RunDetect]: how the records the stage judges are made, outside the timer.
// On one core the garbage the harness leaves is collected on the stage's time, so what the
// records cost should be what a Kafka fetch costs.
const (
	// HarnessFetch lays records out as franz-go hands over a fetch: each batch's events are
	// generated into reused storage and encoded into one buffer, which the records' keys and
	// values slice, with one slab of records per batch.
	HarnessFetch = "fetch"
	// HarnessAlloc is the first harness: a fresh event per record, its strings formatted one
	// by one, and a fresh buffer per record value and key (about 3.8 KB per event).
	HarnessAlloc = "alloc"
)

// DetectOptions configures [RunDetect].
type DetectOptions struct {
	Principals int // distinct principals (default 100,000)
	Events     int // measured events (default 1,000,000)
	// Warmup events are fed before measuring (default 10 per principal), so that every
	// principal is known and the busy ones have mature profiles.
	Warmup int
	Batch  int // records per Handle call, like a Kafka fetch (default 500)
	// Rate is the traffic being judged, in events per second of event time (default 100,000, the
	// throughput the stage is meant to keep up with). Work that is per principal and per unit
	// of event time (profile checkpoints, periodic score records) weighs per event in inverse
	// proportion to it: a slower stream costs more per event and needs fewer events per second.
	Rate int
	// LatencyEvents are then fed one record per Handle call, each call timed (default 20,000).
	LatencyEvents int
	// Harness is how the records judged are made (default [HarnessFetch]).
	Harness string
	// Detectors the stage runs, in order; empty for the default config's.
	Detectors []string
	Log       *slog.Logger // the stage's logger; nil discards
	// CPUProfile, when set, receives a CPU profile of the measured batches (not the warm-up).
	CPUProfile io.Writer
	Out        io.Writer // the report; nil discards
}

func (o *DetectOptions) defaults() error {
	if o.Principals == 0 {
		o.Principals = 100_000
	}
	if o.Events == 0 {
		o.Events = 1_000_000
	}
	if o.Rate == 0 {
		o.Rate = 100_000
	}
	if o.Warmup == 0 {
		o.Warmup = 10 * o.Principals
	}
	if o.Batch == 0 {
		o.Batch = 500
	}
	if o.LatencyEvents == 0 {
		o.LatencyEvents = 20_000
	}
	if o.Harness == "" {
		o.Harness = HarnessFetch
	}
	if o.Harness != HarnessFetch && o.Harness != HarnessAlloc {
		return fmt.Errorf("bench detect: harness %q: want %s or %s", o.Harness, HarnessFetch, HarnessAlloc)
	}
	if o.Principals < 0 || o.Events < 0 || o.Warmup < 0 || o.Batch < 0 || o.LatencyEvents < 0 {
		return errors.New("bench detect: counts must not be negative")
	}
	return nil
}

// DetectReport is what [RunDetect] measured.
type DetectReport struct {
	Principals int            // principals asked for
	Rate       int            // events per second of event time in the traffic
	Harness    string         // how the records were made
	Detectors  []string       // the detectors the stage ran
	Held       map[string]int // principals held at the end, by detector ("rate", "ueba", "score")
	Events     int            // measured events
	Cores      int            // GOMAXPROCS during the measured passes
	Elapsed    time.Duration  // time inside Handle over the measured events
	PerSecond  float64        // measured events per second per core
	// CPU is the process's CPU time inside Handle over the measured events (the collector's
	// included), 0 where the platform does not report it; PerCPUSecond is events per CPU second.
	// On a shared machine it is steadier than the wall time: time the process waits for a core
	// is not counted.
	CPU          time.Duration
	PerCPUSecond float64
	// Per-event latency: single-record Handle calls.
	P50, P99, P999, Max time.Duration
	// Bytes allocated per measured event (batches) by the stage's Handle calls and by the
	// harness making the records, outside the timer.
	StageAlloc, HarnessAlloc float64
	HeapBytes                uint64  // live heap after a forced GC, minus before the stage was built
	PerPrincipal             float64 // HeapBytes / Principals
	Findings, Scores         int     // records produced by the measured passes
	Profiles, Dead           int
}

// RunDetect measures the detect stage (the handler [detectors.Build] returns with the default
// config, or with DetectOptions.Detectors) on normalized events from
// [detectload.Generator], without Kafka: throughput per core in batches, per-event latency, and
// the heap its state holds per principal. Event generation and encoding are not timed, and by
// default ([HarnessFetch]) cost what a Kafka fetch costs; the JSON decode of each record is timed.
func RunDetect(ctx context.Context, o DetectOptions) (DetectReport, error) {
	if err := o.defaults(); err != nil {
		return DetectReport{}, err
	}
	log, out := orDiscard(o.Log, o.Out)
	rep := DetectReport{Principals: o.Principals, Rate: o.Rate, Harness: o.Harness, Events: o.Events, Cores: 1}
	topics := event.TopicNames("bench")
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	reg := prometheus.NewRegistry()
	cfg := detectors.DefaultConfig()
	if len(o.Detectors) > 0 {
		cfg.Detectors = o.Detectors
	}
	rep.Detectors = cfg.Detectors
	h, err := detectors.Build(topics, cfg, reg, log)
	if err != nil {
		return rep, err
	}
	gen := detectload.New(o.Principals, 1, time.Second/time.Duration(o.Rate))
	next := allocRecords(gen, topics.Events, o.Batch)
	if o.Harness == HarnessFetch {
		next = fetchRecords(gen, topics.Events, o.Batch)
	}
	// Allocation is read from runtime/metrics, which stops nothing: the stage's bytes are those
	// allocated inside Handle, the harness's those allocated making the records.
	allocs := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	allocated := func() uint64 {
		metrics.Read(allocs)
		return allocs[0].Value.Uint64()
	}
	var stageBytes, harnessBytes uint64
	count := func(res kafkaio.Result) {
		rep.Dead += len(res.Dead)
		for _, r := range res.Out {
			switch r.Topic {
			case topics.Findings:
				rep.Findings++
			case topics.Scores:
				rep.Scores++
			case topics.Profiles:
				rep.Profiles++
			}
		}
	}
	fmt.Fprintf(out, "warm-up: %d events over %d principals\n", o.Warmup, o.Principals)
	for done := 0; done < o.Warmup; done += o.Batch {
		recs, err := next(min(o.Batch, o.Warmup-done))
		if err != nil {
			return rep, err
		}
		if _, err := h.Handle(ctx, recs); err != nil {
			return rep, err
		}
	}
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	if o.CPUProfile != nil {
		if err := pprof.StartCPUProfile(o.CPUProfile); err != nil {
			return rep, err
		}
	}
	for done := 0; done < o.Events; done += o.Batch {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		a0 := allocated()
		recs, err := next(min(o.Batch, o.Events-done))
		if err != nil {
			return rep, err
		}
		a1 := allocated()
		c0, _ := cpuTime()
		s := time.Now()
		res, err := h.Handle(ctx, recs)
		rep.Elapsed += time.Since(s)
		c1, _ := cpuTime()
		rep.CPU += c1 - c0
		harnessBytes, stageBytes = harnessBytes+a1-a0, stageBytes+allocated()-a1
		if err != nil {
			return rep, err
		}
		count(res)
	}
	if o.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	lat := make([]time.Duration, 0, o.LatencyEvents)
	for range o.LatencyEvents {
		recs, err := next(1)
		if err != nil {
			return rep, err
		}
		s := time.Now()
		res, err := h.Handle(ctx, recs)
		lat = append(lat, time.Since(s))
		if err != nil {
			return rep, err
		}
		count(res)
	}
	runtime.GOMAXPROCS(prev)
	sum := summarize(lat, 0, 0)
	rep.P50, rep.P99, rep.P999, rep.Max = sum.p50, sum.p99, sum.p999, sum.maxLat
	if rep.Elapsed > 0 {
		rep.PerSecond = float64(o.Events) / rep.Elapsed.Seconds()
	}
	if rep.CPU > 0 {
		rep.PerCPUSecond = float64(o.Events) / rep.CPU.Seconds()
	}
	if o.Events > 0 {
		rep.StageAlloc, rep.HarnessAlloc = float64(stageBytes)/float64(o.Events), float64(harnessBytes)/float64(o.Events)
	}
	next = nil
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(h)
	if after.HeapAlloc > before.HeapAlloc {
		rep.HeapBytes = after.HeapAlloc - before.HeapAlloc
	}
	rep.PerPrincipal = float64(rep.HeapBytes) / float64(o.Principals)
	if rep.Held, err = principalsHeld(reg); err != nil {
		return rep, err
	}
	writeDetect(out, rep)
	return rep, nil
}

// allocRecords is [HarnessAlloc]: a fresh event per record and a fresh key and value per record.
func allocRecords(gen *detectload.Generator, topic string, size int) func(n int) ([]*kgo.Record, error) {
	batch := make([]*kgo.Record, 0, size)
	return func(n int) ([]*kgo.Record, error) {
		batch = batch[:0]
		for range n {
			e := gen.Next()
			r, err := kafkaio.RecordOf(topic, event.PrincipalKey(e.Tenant, e.Principal), &e)
			if err != nil {
				return nil, err
			}
			batch = append(batch, r)
		}
		return batch, nil
	}
}

// fetchRecords is [HarnessFetch]: the batch's events are generated into reused storage and
// encoded into one buffer allocated per batch, as franz-go decompresses a fetched record batch
// into one buffer; the records, one slab per batch, slice their keys and values from it.
func fetchRecords(gen *detectload.Generator, topic string, size int) func(n int) ([]*kgo.Record, error) {
	evs := make([]event.Event, size)
	batch := make([]*kgo.Record, 0, size)
	ends := make([][2]int, size) // per record: where its key ends, where its value ends
	var scratch []byte
	return func(n int) ([]*kgo.Record, error) {
		gen.FillReused(evs[:n])
		scratch = scratch[:0]
		for i := range evs[:n] {
			e := &evs[i]
			scratch = append(append(append(scratch, e.Tenant...), '/'), event.PrincipalID(e.Principal)...)
			ends[i][0] = len(scratch)
			var err error
			if scratch, err = event.AppendEncode(scratch, e); err != nil {
				return nil, err
			}
			ends[i][1] = len(scratch)
		}
		// The fetch's buffer: fresh and of the batch's size, as a decompressed batch is.
		buf := append([]byte(nil), scratch...)
		recs := make([]kgo.Record, n)
		batch = batch[:0]
		from := 0
		for i := range recs {
			k, v := ends[i][0], ends[i][1]
			recs[i] = kgo.Record{Topic: topic, Key: buf[from:k:k], Value: buf[k:v:v]}
			batch = append(batch, &recs[i])
			from = v
		}
		return batch, nil
	}
}

// principalsHeld reads the stage's principals gauges.
func principalsHeld(reg *prometheus.Registry) (map[string]int, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	held := map[string]int{}
	for _, mf := range mfs {
		if mf.GetName() != "mcpwatch_detector_principals" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "detector" {
					held[l.GetValue()] = int(m.GetGauge().GetValue())
				}
			}
		}
	}
	return held, nil
}

func writeDetect(w io.Writer, r DetectReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	la, _ := loadAverage()
	fmt.Fprintf(tw, "detectors\t%s and the scorer\n", strings.Join(r.Detectors, ", "))
	fmt.Fprintf(tw, "principals\t%d (held: rate %d, ueba %d, score %d)\n", r.Principals, r.Held["rate"], r.Held["ueba"], r.Held["score"])
	fmt.Fprintf(tw, "measured events\t%d in batches, GOMAXPROCS=%d, load %s; traffic %d events/s of event time\n", r.Events, r.Cores, la, r.Rate)
	fmt.Fprintf(tw, "throughput\t%.0f events/s per core (%.1f µs/event)\n", r.PerSecond, float64(r.Elapsed.Microseconds())/float64(max(r.Events, 1)))
	if r.CPU > 0 {
		fmt.Fprintf(tw, "CPU time\t%.0f events per CPU second (%.1f µs of process CPU per event, the collector's included)\n", r.PerCPUSecond, float64(r.CPU.Microseconds())/float64(max(r.Events, 1)))
	}
	fmt.Fprintf(tw, "allocated per event\t%.0f bytes by the stage, %.0f by the harness (%s records, untimed)\n", r.StageAlloc, r.HarnessAlloc, r.Harness)
	fmt.Fprintf(tw, "latency per event\tp50 %s  p99 %s  p99.9 %s  max %s ms (single-record batches)\n", fmtMS(r.P50), fmtMS(r.P99), fmtMS(r.P999), fmtMS(r.Max))
	fmt.Fprintf(tw, "heap\t%.1f MiB live, %.0f bytes (%.2f KiB) per principal (the detectors and the scorer)\n", float64(r.HeapBytes)/(1<<20), r.PerPrincipal, r.PerPrincipal/1024)
	fmt.Fprintf(tw, "produced\t%d findings, %d scores, %d profiles, %d dead letters\n", r.Findings, r.Scores, r.Profiles, r.Dead)
	_ = tw.Flush()
}
