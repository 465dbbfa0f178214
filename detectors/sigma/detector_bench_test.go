package sigma

import (
	"fmt"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/bench/detectload"
	sigmarules "github.com/mcpwatch/mcpwatch/rules/sigma"
)

// BenchmarkDetector measures the sigma detector as the detect stage runs it, one op per event:
// [Detector.Observe] (matching, correlations, findings with their evidence) over the stream of
// internal/bench/detectload (tool calls and their responses, resource reads, tool listings,
// denials; 1,000 principals, events 10 µs apart in event time), with the shipped rules
// (rules/sigma, one of them a correlation) and with 100 and 1,000 rules of [genMixedRules], each
// with the prefilter and without it. Event generation happens outside the timer, 65,536 events
// at a time. Run with -cpu 1 for the per-core figure.
func BenchmarkDetector(b *testing.B) {
	sets := []struct {
		name string
		load func() (*RuleSet, []error)
	}{
		{"shipped", func() (*RuleSet, []error) { return Load(sigmarules.FS, ".") }},
		{"mixed-100", func() (*RuleSet, []error) { return Parse("bench.yml", []byte(genMixedRules(100))) }},
		{"mixed-1000", func() (*RuleSet, []error) { return Parse("bench.yml", []byte(genMixedRules(1000))) }},
	}
	for _, set := range sets {
		for _, pre := range []string{"off", "on"} {
			b.Run(fmt.Sprintf("rules=%s/prefilter=%s", set.name, pre), func(b *testing.B) {
				rs, errs := set.load()
				if len(errs) > 0 {
					b.Fatal(errs)
				}
				rs.scanAll = pre == "off"
				d, err := NewWithRules(rs, DefaultConfig())
				if err != nil {
					b.Fatal(err)
				}
				gen := detectload.New(1000, 1, 10*time.Microsecond)
				evs := make([]event.Event, 1<<16)
				next := len(evs)
				var out detect.Output
				findings := 0
				b.ReportAllocs()
				for b.Loop() {
					if next == len(evs) {
						b.StopTimer()
						gen.Fill(evs)
						next = 0
						b.StartTimer()
					}
					d.Observe(&evs[next], &out)
					next++
					findings += len(out.Findings)
					out.Reset()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
				b.ReportMetric(float64(findings)/float64(b.N), "findings/event")
				b.ReportMetric(float64(rs.indexedRules()), "indexed-rules")
			})
		}
	}
}
