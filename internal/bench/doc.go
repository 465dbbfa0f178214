// Package bench holds the performance benchmarks that need real servers, `mcpwatch bench
// gateway` ([RunGateway]) and `mcpwatch bench pipeline` ([RunPipeline]). They print figures and
// fail only on errors, never on timing: performance targets do not belong in timed unit tests.
// BENCHMARKS.md quotes their output.
//
// Each benchmark takes its options and dependencies (Kafka config, ClickHouse options, logger,
// output writer) explicitly; the cobra commands in cmd/mcpwatch only map flags onto them.
package bench

import (
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
)

// startCPUProfile profiles the whole process into path until stop is called; an empty path
// profiles nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}

// loadAverage returns the 1, 5 and 15 minute load averages from /proc/loadavg, false where
// there is none.
func loadAverage() (string, bool) {
	la, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "", false
	}
	return strings.Join(strings.Fields(string(la))[:3], " "), true
}

// orDiscard replaces a nil logger or writer by one that discards.
func orDiscard(log *slog.Logger, out io.Writer) (*slog.Logger, io.Writer) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if out == nil {
		out = io.Discard
	}
	return log, out
}
