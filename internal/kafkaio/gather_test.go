package kafkaio

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// With MaxBatchDelay a batch grows over several polls (a sink wants few large INSERTs), and it is
// cut at MaxPoll records or MaxBatchBytes bytes. If gathering broke, records trickling in would
// be written one tiny batch at a time, or a batch could grow without bound.
func TestStageGathersBatches(t *testing.T) {
	for _, c := range []struct {
		name           string
		maxPoll, bytes int
		delay          time.Duration
		want           []int
	}{
		{"by delay", 1000, 0, 3 * time.Second, []int{20}},
		{"by rows", 8, 0, 3 * time.Second, []int{8, 8, 4}},
		{"by bytes", 1000, 5 * 100, 3 * time.Second, []int{5, 5, 5, 5}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := fakeBroker(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var (
				mu    sync.Mutex
				sizes []int
			)
			h := HandlerFunc(func(_ context.Context, recs []*kgo.Record) (Result, error) {
				mu.Lock()
				defer mu.Unlock()
				sizes = append(sizes, len(recs))
				return Result{}, nil
			})
			st, err := NewStage(Config{Brokers: b.brokers}, StageConfig{
				Name: "gather", Topics: []string{b.names.Raw}, DeadLetterTopic: b.names.DeadLetter,
				MaxPoll: c.maxPoll, MaxBatchBytes: c.bytes, MaxBatchDelay: c.delay,
			}, h, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			sctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- st.Run(sctx) }()
			cl := b.client(t)
			// 20 records of 100 bytes, one every 50 ms, into one partition.
			for range 20 {
				r := &kgo.Record{Topic: b.names.Raw, Partition: 0, Key: []byte("k"), Value: make([]byte, 99)}
				if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			for ctx.Err() == nil {
				mu.Lock()
				n := 0
				for _, s := range sizes {
					n += s
				}
				mu.Unlock()
				if n == 20 {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			stop()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(sizes, c.want) {
				t.Fatalf("batches %v, want %v", sizes, c.want)
			}
		})
	}
}
