package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/control"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/response"
)

// ResponseOptions configures [RunResponse].
type ResponseOptions struct {
	Kafka          kafkaio.Config
	Partitions     int32
	Replication    int16
	Findings       int           // measured findings (default 200)
	Interval       time.Duration // between findings (default 50ms)
	Replicas       int           // gateway replicas following the control topic (default 2)
	Timeout        time.Duration // per finding, before it counts as lost (default 10s)
	Log            *slog.Logger
	Out            io.Writer
	MetadataMinAge time.Duration // lowered for tests; 0 keeps the client default
}

func (o *ResponseOptions) defaults() {
	if o.Findings == 0 {
		o.Findings = 200
	}
	if o.Interval == 0 {
		o.Interval = 50 * time.Millisecond
	}
	if o.Replicas == 0 {
		o.Replicas = 2
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Partitions == 0 {
		o.Partitions = 3
	}
	if o.Replication == 0 {
		o.Replication = 1
	}
}

// ResponseResult is what [RunResponse] measured: per replica, and for the last replica of each
// finding (the revocation is enforced everywhere only then), the time from the finding's
// publication to the first moment that replica's control store refuses the principal.
type ResponseResult struct {
	PerReplica [][]time.Duration
	Everywhere []time.Duration
	Lost       int
}

// RunResponse measures finding → revocation enforced at every gateway replica, on the real Kafka:
// it runs the respond stage (the responder that revokes the finding's subject) on a fresh topic
// prefix and Replicas control followers, each with the control store a gateway replica consults on
// every call ([control.Store.Check]). For each finding — a new subject each time, score 95 — it
// records when the finding was handed to Kafka and when each replica's store first refuses the
// subject (observed from the store's change hook, the moment the gateway's next call would be
// refused). Findings go one at a time, Interval apart, so each latency is that of an idle
// pipeline, not of a queue.
func RunResponse(ctx context.Context, o ResponseOptions) (*ResponseResult, error) {
	o.defaults()
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	names := event.TopicNames("bench-response-" + hex.EncodeToString(rb[:]))
	var extra []kgo.Opt
	if o.MetadataMinAge > 0 {
		extra = append(extra, kgo.MetadataMinAge(o.MetadataMinAge))
	}
	cl, err := kafkaio.NewClient(o.Kafka, extra...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	if err := kafkaio.EnsureTopics(ctx, cl, kafkaio.Topics(names, o.Partitions, o.Replication, 1)); err != nil {
		return nil, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = kadm.NewClient(cl).DeleteTopics(dctx, names.All()...)
	}()

	rcfg := response.DefaultConfig()
	rcfg.Threshold, rcfg.RevokeFor = 50, 10*time.Minute
	r, err := response.New(names, rcfg, nil, o.Log)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	scfg := o.Kafka
	scfg.ClientID = "bench-respond"
	st, err := kafkaio.NewStage(scfg, kafkaio.StageConfig{Name: response.StageRespond, Group: "bench-respond-" + hex.EncodeToString(rb[:]),
		Topics: []string{names.Findings}, DeadLetterTopic: names.DeadLetter}, r.EnforceHandler(), nil, o.Log)
	if err != nil {
		return nil, err
	}
	defer func() { _ = st.Close() }()

	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	wg.Go(func() { _ = st.Run(rctx) })

	// Each replica: its own follower and store; the hook notes when a watched subject is first
	// refused.
	type replica struct {
		store *control.Store
		mu    sync.Mutex
		want  string
		seen  chan time.Time
	}
	reps := make([]*replica, o.Replicas)
	for i := range reps {
		rp := &replica{store: control.NewStore(), seen: make(chan time.Time, 1)}
		rp.store.OnChange(func() {
			rp.mu.Lock()
			sub := rp.want
			rp.mu.Unlock()
			if sub == "" {
				return
			}
			if _, ok := rp.store.Check("bench", event.Principal{Subject: sub}, "files", "echo", time.Now()); ok {
				rp.mu.Lock()
				if rp.want == sub {
					rp.want = ""
					rp.seen <- time.Now()
				}
				rp.mu.Unlock()
			}
		})
		fcfg := o.Kafka
		fcfg.ClientID = fmt.Sprintf("bench-gateway-%d", i+1)
		f, err := control.NewFollower(fcfg, names.Control, rp.store, nil, o.Log, extra...)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		wg.Go(func() { _ = f.Run(rctx) })
		if err := f.WaitReady(ctx); err != nil {
			return nil, fmt.Errorf("replica %d: %w", i+1, err)
		}
		reps[i] = rp
	}

	res := &ResponseResult{PerReplica: make([][]time.Duration, o.Replicas)}
	warm := 5
	for i := -warm; i < o.Findings; i++ {
		sub := fmt.Sprintf("bench-user-%d", i+warm)
		for _, rp := range reps {
			rp.mu.Lock()
			rp.want = sub
			select { // a late signal of the previous round
			case <-rp.seen:
			default:
			}
			rp.mu.Unlock()
		}
		now := time.Now()
		f := &event.Finding{ID: event.NewID(), Time: now.UTC(), Tenant: "bench", Principal: event.Principal{Subject: sub},
			Detector: "bench", Score: 95, Severity: 9, Summary: "bench finding", WindowStart: now, WindowEnd: now}
		rec, err := kafkaio.RecordOf(names.Findings, event.PrincipalKey(f.Tenant, f.Principal), f)
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		cl.Produce(ctx, rec, nil) // timed from the hand-over, as a detector's producer would
		var last time.Duration
		lost := false
		for j, rp := range reps {
			select {
			case at := <-rp.seen:
				d := at.Sub(t0)
				if i >= 0 {
					res.PerReplica[j] = append(res.PerReplica[j], d)
				}
				last = max(last, d)
			case <-time.After(o.Timeout - time.Since(t0)):
				lost = true
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if i >= 0 {
			if lost {
				res.Lost++
			} else {
				res.Everywhere = append(res.Everywhere, last)
			}
		}
		time.Sleep(o.Interval)
	}
	if len(res.Everywhere) == 0 {
		return res, errors.New("bench response: no revocation reached every replica")
	}
	writeResponseReport(o.Out, &o, res)
	return res, nil
}

func writeResponseReport(w io.Writer, o *ResponseOptions, res *ResponseResult) {
	fmt.Fprintf(w, "finding → revocation enforced (respond stage, %d gateway replicas following the control topic), %d findings, %s apart\n",
		o.Replicas, o.Findings, o.Interval)
	fmt.Fprintf(w, "%-22s %6s %9s %9s %9s %9s\n", "where", "n", "p50_ms", "p90_ms", "p99_ms", "max_ms")
	row := func(name string, lat []time.Duration) {
		s := slices.Clone(lat)
		slices.Sort(s)
		mx := time.Duration(0)
		if len(s) > 0 {
			mx = s[len(s)-1]
		}
		fmt.Fprintf(w, "%-22s %6d %9s %9s %9s %9s\n", name, len(s), fmtMS(percentile(s, 50)), fmtMS(percentile(s, 90)),
			fmtMS(percentile(s, 99)), fmtMS(mx))
	}
	for i, lat := range res.PerReplica {
		row(fmt.Sprintf("replica %d", i+1), lat)
	}
	row("every replica", res.Everywhere)
	fmt.Fprintf(w, "lost (not enforced within %s): %d\n", o.Timeout, res.Lost)
}
