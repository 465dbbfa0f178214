package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// gatewayRow is one line of the gateway report.
type gatewayRow struct {
	rate   int
	mode   string
	target string
	sum    latencySummary
}

// added returns, for a gateway row, the direct row of the same rate and mode, so that the report
// can show gateway − direct.
func added(rows []gatewayRow, r gatewayRow) (gatewayRow, bool) {
	if r.target != "gateway" {
		return gatewayRow{}, false
	}
	for _, d := range rows {
		if d.target == "direct" && d.rate == r.rate && d.mode == r.mode {
			return d, true
		}
	}
	return gatewayRow{}, false
}

func fmtMS(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }

// writeGatewayTable prints the rows, latencies in milliseconds, with the gateway's added p50 and
// p99.
func writeGatewayTable(w io.Writer, rows []gatewayRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rate/s\tmode\ttarget\tachieved/s\tcalls\terrors\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\tadded p50\tadded p99\t")
	for _, r := range rows {
		a50, a99 := "", ""
		if d, ok := added(rows, r); ok {
			a50, a99 = fmtMS(r.sum.p50-d.sum.p50), fmtMS(r.sum.p99-d.sum.p99)
		}
		s := r.sum
		fmt.Fprintf(tw, "%d\t%s\t%s\t%.0f\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.rate, r.mode, r.target, s.achieved,
			s.n, s.errors, fmtMS(s.p50), fmtMS(s.p90), fmtMS(s.p99), fmtMS(s.p999), fmtMS(s.maxLat), a50, a99)
	}
	_ = tw.Flush()
}

// passResult is one throughput pass of the pipeline benchmark.
type passResult struct {
	name    string
	round   int
	rows    int
	elapsed time.Duration
}

func (r passResult) rate() float64 { return float64(r.rows) / r.elapsed.Seconds() }

// lagResult is the pipeline benchmark's end-to-end lag measurement.
type lagResult struct {
	rate, produced, sampled, seen, missing int
	achieved                               float64
	p50, p90, p99, max                     time.Duration
}

// writePipelineReport prints the throughput of each round's passes side by side, relative to
// the raw copy, and the lag figures when lag is not nil.
func writePipelineReport(w io.Writer, o *PipelineOptions, results []passResult, lag *lagResult) {
	fmt.Fprintf(w, "\nKafka → ClickHouse throughput, %d events per pass, rows/s from first to last row visible:\n", o.Events)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tcopy\tsink\tpipeline\tsink/copy\tpipeline/copy\t")
	byRound := map[int]map[string]float64{}
	for _, r := range results {
		if byRound[r.round] == nil {
			byRound[r.round] = map[string]float64{}
		}
		byRound[r.round][r.name] = r.rate()
	}
	for round := 1; round <= o.Rounds; round++ {
		m := byRound[round]
		fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%.0f\t%.0f%%\t%.0f%%\t\n", round, m["copy"], m["sink"], m["pipeline"],
			100*m["sink"]/m["copy"], 100*m["pipeline"]/m["copy"])
	}
	_ = tw.Flush()
	if lag == nil {
		return
	}
	fmt.Fprintf(w, "\nEnd-to-end lag (raw event produced → row visible to a SELECT), normalizer + sink:\n")
	fmt.Fprintf(w, "  target %d ev/s, achieved %.0f ev/s over %s; %d produced, %d missing; %d sampled, %d timed\n",
		lag.rate, lag.achieved, o.LagDuration, lag.produced, lag.missing, lag.sampled, lag.seen)
	fmt.Fprintf(w, "  p50 %s  p90 %s  p99 %s  max %s (poll interval %s)\n",
		lag.p50.Round(time.Millisecond), lag.p90.Round(time.Millisecond), lag.p99.Round(time.Millisecond),
		lag.max.Round(time.Millisecond), o.Poll)
}
