package eval

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/enrich"
	"github.com/mcpwatch/mcpwatch/eval/traffic"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/policy"
)

// Stages are the real stage handlers the offline driver runs events through. The host (cmd, or
// a test) builds them: only hosts may import stage packages (internal/archtest), so this package
// depends on the handler interface alone.
type Stages struct {
	// Process returns the process stage's handler enriching with en
	// (processors.Handler(topics, log, processors.WithEnricher(en))).
	Process func(topics event.Topics, en *enrich.Enricher) kafkaio.Handler
	// Detect returns a fresh detect stage's handler (detectors.Build with the default config).
	Detect func(topics event.Topics) (kafkaio.Handler, error)
}

// Topics are the names records carry between the in-process stages.
var Topics = event.Topics{Raw: "raw", Events: "events", Findings: "findings", Scores: "scores", DeadLetter: "dlq"}

// Output is what the detect stage published for a dataset, in event-time order.
type Output struct {
	Findings []event.Finding
	Scores   []event.Score
	Events   int // raw events built
	Dead     int // records a stage dead-lettered
}

// batchSize is how many raw events go to the stages at once: a stage's output does not depend on
// the batching (the detect handler expires per event), only the speed does.
const batchSize = 2048

// Company loads the simulated company's catalog, directory and policy with the real loaders.
func Company(d *traffic.Dataset) (*enrich.Enricher, *policy.Policy, error) {
	cat, err := enrich.ParseCatalog(traffic.CatalogYAML(), "eval-catalog.yaml")
	if err != nil {
		return nil, nil, err
	}
	dir, err := enrich.ParseDirectory(traffic.DirectoryYAML(d.Principals), "eval-directory.yaml")
	if err != nil {
		return nil, nil, err
	}
	pol, err := policy.Load(bytes.NewReader(traffic.PolicyYAML()), "eval-policy.yaml")
	if err != nil {
		return nil, nil, err
	}
	return enrich.New(cat, dir), pol, nil
}

// RunOffline drives the dataset's calls through the raw-event builder, the process stage and the
// detect stage in event-time order, in process, without Kafka. observe, when not nil, sees every
// normalized (enriched) event, in order.
func RunOffline(ctx context.Context, d *traffic.Dataset, st Stages, observe func(*event.Event)) (*Output, error) {
	en, pol, err := Company(d)
	if err != nil {
		return nil, err
	}
	rb, err := newRawBuilder(pol)
	if err != nil {
		return nil, err
	}
	proc := st.Process(Topics, en)
	det, err := st.Detect(Topics)
	if err != nil {
		return nil, err
	}
	out := &Output{}
	// Calls come in time order; a response follows its request by the call's latency. Events are
	// buffered and released, in time order, once no later call can precede them: the stream is
	// ordered as a gateway publishes it, without holding the whole run in memory.
	err = rb.stream(ctx, d.Calls, func(batch []*event.Event) error {
		out.Events += len(batch)
		return out.step(ctx, batch, proc, det, observe)
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(out.Findings, func(a, b event.Finding) int { return a.Time.Compare(b.Time) })
	slices.SortStableFunc(out.Scores, func(a, b event.Score) int { return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Subject, b.Subject)) })
	return out, nil
}

func (o *Output) step(ctx context.Context, batch []*event.Event, proc, det kafkaio.Handler, observe func(*event.Event)) error {
	recs := make([]*kgo.Record, 0, len(batch))
	for _, e := range batch {
		r, err := kafkaio.RecordOf(Topics.Raw, event.PrincipalKey(e.Tenant, e.Principal), e)
		if err != nil {
			return err
		}
		recs = append(recs, r)
	}
	pres, err := proc.Handle(ctx, recs)
	if err != nil {
		return fmt.Errorf("process stage: %w", err)
	}
	o.Dead += len(pres.Dead)
	norm := pres.Out[:0]
	for _, r := range pres.Out {
		if r.Topic == Topics.Events {
			norm = append(norm, r)
		}
	}
	if observe != nil {
		for _, r := range norm {
			var e event.Event
			if err := event.Decode(r.Value, &e); err != nil {
				return err
			}
			observe(&e)
		}
	}
	dres, err := det.Handle(ctx, norm)
	if err != nil {
		return fmt.Errorf("detect stage: %w", err)
	}
	o.Dead += len(dres.Dead)
	for _, r := range dres.Out {
		switch r.Topic {
		case Topics.Findings:
			var f event.Finding
			if err := event.Decode(r.Value, &f); err != nil {
				return err
			}
			o.Findings = append(o.Findings, f)
		case Topics.Scores:
			var s event.Score
			if err := event.Decode(r.Value, &s); err != nil {
				return err
			}
			o.Scores = append(o.Scores, s)
		}
	}
	return nil
}
