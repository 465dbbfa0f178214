package privacy

import (
	"bytes"
	"math"
	"slices"
	"testing"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"
)

// ksStatistic is the one-sample Kolmogorov–Smirnov statistic D = sup |F_n(x) - F(x)|.
func ksStatistic(xs []float64, cdf func(float64) float64) float64 {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	n := float64(len(xs))
	var d float64
	for i, x := range xs {
		f := cdf(x)
		d = math.Max(d, math.Max(float64(i+1)/n-f, f-float64(i)/n))
	}
	return d
}

// ksCritical is the asymptotic critical value of D at significance alpha: sqrt(-ln(alpha/2)/2)/sqrt(n).
func ksCritical(n int, alpha float64) float64 {
	return math.Sqrt(-math.Log(alpha/2)/2) / math.Sqrt(float64(n))
}

func draws(t *testing.T, l Laplace, n int, scale float64) []float64 {
	t.Helper()
	xs := make([]float64, n)
	for i := range xs {
		v, err := l.Sample(scale)
		if err != nil {
			t.Fatal(err)
		}
		xs[i] = v
	}
	return xs
}

// The noise must be Laplace(0, Δ/ε), drawn from crypto/rand: if this fails, the ε the ledger
// charges is not the ε the analyst gets. 20,000 draws, KS at α = 1e-4 (a correct sampler fails
// once in 10,000 runs), plus mean and variance within 5 standard errors.
func TestLaplaceDistribution(t *testing.T) {
	const n = 20000
	for _, scale := range []float64{1 / DefaultEpsilon, 1000 / DefaultEpsilon} {
		xs := draws(t, Laplace{}, n, scale)
		want := distuv.Laplace{Mu: 0, Scale: scale}
		d := ksStatistic(xs, want.CDF)
		if crit := ksCritical(n, 1e-4); d > crit {
			t.Errorf("scale %v: KS D = %.4f > %.4f: draws are not Laplace(0, %v)", scale, d, crit, scale)
		}
		mean, variance := stat.MeanVariance(xs, nil)
		// Laplace(0, b): variance 2b², fourth moment 24b⁴, so Var(s²) ≈ 20b⁴/n.
		if se := math.Sqrt(2/float64(n)) * scale; math.Abs(mean) > 5*se {
			t.Errorf("scale %v: mean %.4f, want 0 ± %.4f", scale, mean, 5*se)
		}
		if se := math.Sqrt(20/float64(n)) * scale * scale; math.Abs(variance-2*scale*scale) > 5*se {
			t.Errorf("scale %v: variance %.4f, want %.4f ± %.4f", scale, variance, 2*scale*scale, 5*se)
		}
		t.Logf("scale %v: KS D %.4f (critical %.4f), mean %.4f, variance %.3f (want %.3f)", scale, d, ksCritical(n, 1e-4), mean, variance, 2*scale*scale)
	}
}

// The statistical test must be able to fail: a sampler with 25% too much or too little noise is
// rejected by the same KS check. Without this, TestLaplaceDistribution could pass on anything.
func TestLaplaceKSDetectsWrongScale(t *testing.T) {
	const n = 20000
	for _, factor := range []float64{0.75, 1.25} {
		xs := draws(t, Laplace{}, n, 2*factor)
		d := ksStatistic(xs, distuv.Laplace{Mu: 0, Scale: 2}.CDF)
		if d <= ksCritical(n, 1e-4) {
			t.Errorf("scale off by %v: KS D = %.4f not rejected", factor, d)
		}
	}
	// Normal noise of the same variance is not Laplace either.
	xs := make([]float64, n)
	nd := distuv.Normal{Mu: 0, Sigma: 2 * math.Sqrt2}
	for i := range xs {
		xs[i] = nd.Rand()
	}
	if d := ksStatistic(xs, distuv.Laplace{Mu: 0, Scale: 2}.CDF); d <= ksCritical(n, 1e-4) {
		t.Errorf("normal draws passed as Laplace: D = %.4f", d)
	}
}

// A failing random source must fail the sample (and so the query), never fall back to weaker
// randomness; bad scales are refused.
func TestLaplaceErrors(t *testing.T) {
	if _, err := (Laplace{Rand: bytes.NewReader([]byte{1, 2, 3})}).Sample(1); err == nil {
		t.Fatal("short random read accepted")
	}
	for _, s := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		if _, err := (Laplace{}).Sample(s); err == nil {
			t.Errorf("scale %v accepted", s)
		}
	}
	// The same bytes give the same draw, and the sign bit flips it: the mapping is deterministic
	// given the source, so all randomness comes from the source.
	b := []byte{0, 0, 0, 0, 0, 0, 0, 0x80}
	v1, _ := (Laplace{Rand: bytes.NewReader(b)}).Sample(2)
	b[0] = 1
	v2, _ := (Laplace{Rand: bytes.NewReader(b)}).Sample(2)
	if v1 <= 0 || v2 != -v1 {
		t.Fatalf("draws %v %v", v1, v2)
	}
}

// snap keeps values on a grid no finer than a quarter of the noise scale.
func TestSnap(t *testing.T) {
	// scale 2000: grid 256, the largest power of two not above 2000/4.
	if got := snap(1234.56789, 2000); got != 1280 {
		t.Fatalf("snap = %v", got)
	}
	if got := snap(0.123456, 0.001); got != math.Round(0.123456*1024)/1024 {
		t.Fatalf("snap small = %v", got)
	}
}
