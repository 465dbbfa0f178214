package live

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/app"
	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/eval"
	"github.com/mcpwatch/mcpwatch/eval/traffic"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

type kafka struct {
	cl     *kgo.Client
	adm    *kadm.Client
	topics event.Topics
}

func newKafka(cfg *app.Config) (*kafka, error) {
	cl, err := kafkaio.NewClient(cfg.KafkaConfig("mcpwatch-eval-live"))
	if err != nil {
		return nil, err
	}
	return &kafka{cl: cl, adm: kadm.NewClient(cl), topics: cfg.Topics()}, nil
}

func (k *kafka) close() { k.cl.Close() }

// publishHistory publishes the raw events of calls, moved by shift, under tenant, to the raw
// topic keyed by principal as the gateway does, and returns how many.
func (k *kafka) publishHistory(ctx context.Context, calls []traffic.Call, shift time.Duration, tenant string, toks *tokens) (int, error) {
	pol, err := companyPolicy()
	if err != nil {
		return 0, err
	}
	rb, err := eval.NewRawBuilder(pol)
	if err != nil {
		return 0, err
	}
	moved := make([]traffic.Call, len(calls))
	for i, c := range calls {
		c.Time, c.TokenID = c.Time.Add(shift), toks.id(c.TokenID)
		moved[i] = c
	}
	n := 0
	err = rb.Stream(ctx, moved, func(batch []*event.Event) error {
		recs := make([]*kgo.Record, 0, len(batch))
		for _, e := range batch {
			e.Tenant = tenant
			r, err := kafkaio.RecordOf(k.topics.Raw, event.PrincipalKey(e.Tenant, e.Principal), e)
			if err != nil {
				return err
			}
			recs = append(recs, r)
		}
		n += len(recs)
		return k.cl.ProduceSync(ctx, recs...).FirstErr()
	})
	return n, err
}

// waitDrained waits until the consumer groups of the stages (prefix-<stage>) have committed
// everything on their topics, in order: a later stage is drained only once those before it are.
func (k *kafka) waitDrained(ctx context.Context, limit time.Duration, prefix string, stages ...component.Type) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for _, st := range stages {
		group := prefix + "-" + string(st)
		var last int64 = -1
		for {
			lags, err := k.adm.Lag(ctx, group)
			if err == nil {
				err = lags.Error()
			}
			if err == nil {
				if l, ok := lags[group]; ok {
					last = l.Lag.Total()
					if last == 0 && len(l.Lag) > 0 {
						break
					}
				}
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w: group %s lag %d (%v)", errNotDrained, group, last, err)
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	return nil
}

// deleteTopics deletes the run's topics: a run's records are in ClickHouse, and thousands of
// leftover topics slow every later broker start.
func deleteTopics(cfg *app.Config, log *slog.Logger) {
	cl, err := kafkaio.NewClient(cfg.KafkaConfig("mcpwatch-eval-live"))
	if err != nil {
		log.Warn("delete topics", "err", err)
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).DeleteTopics(ctx, cfg.Topics().All()...)
	if err != nil {
		log.Warn("delete topics", "err", err)
		return
	}
	for _, r := range resp {
		if r.Err != nil && !errors.Is(r.Err, kerr.UnknownTopicOrPartition) {
			log.Warn("delete topic", "topic", r.Topic, "err", r.Err)
		}
	}
}
