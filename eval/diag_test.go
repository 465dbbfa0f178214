package eval

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/eval/traffic"
	"github.com/mcpwatch/mcpwatch/event"
)

func TestDiag(t *testing.T) {
	seedS := os.Getenv("DIAG_SEED")
	if seedS == "" {
		t.Skip()
	}
	seed, _ := strconv.Atoi(seedS)
	d, err := traffic.Generate(traffic.Config{Seed: uint64(seed), Principals: 200, History: 72 * time.Hour, Split: traffic.Tune})
	if err != nil {
		t.Fatal(err)
	}
	out, err := RunOffline(context.Background(), d, realStages(), nil)
	if err != nil {
		t.Fatal(err)
	}
	w := LabelWindows(d)
	sc := ScoreWindows(w, out.Scores)
	var neg []float64
	pos := map[traffic.Kind][]float64{}
	for i, l := range w.Label {
		if l {
			pos[w.Kind[i]] = append(pos[w.Kind[i]], sc[i])
		} else {
			neg = append(neg, sc[i])
		}
	}
	sort.Float64s(neg)
	q := func(xs []float64, p float64) float64 { return xs[int(p*float64(len(xs)-1))] }
	fmt.Printf("clean: n=%d p50 %.1f p90 %.1f p99 %.1f p99.9 %.1f max %.1f\n", len(neg), q(neg, .5), q(neg, .9), q(neg, .99), q(neg, .999), neg[len(neg)-1])
	thr := q(neg, .99)
	for k, xs := range pos {
		sort.Float64s(xs)
		above := 0
		for _, x := range xs {
			if x > thr {
				above++
			}
		}
		fmt.Printf("%-10s n=%3d p10 %.1f p50 %.1f p90 %.1f  above thr %.2f\n", k, len(xs), q(xs, .1), q(xs, .5), q(xs, .9), float64(above)/float64(len(xs)))
	}
	// what makes the highest clean scores
	attacked := map[string]bool{}
	for _, in := range d.Instances {
		attacked[in.Principal] = true
	}
	var top []event.Score
	for _, s := range out.Scores {
		if !attacked[s.Subject] && !s.Time.Before(d.TestStart) && s.Score >= q(neg, .99) {
			top = append(top, s)
		}
	}
	sort.Slice(top, func(i, j int) bool { return top[i].Score > top[j].Score })
	for i, s := range top {
		if i >= 15 {
			break
		}
		fmt.Printf("%s %.1f %s\n", s.Subject, s.Score, s.Explanation)
	}
}
