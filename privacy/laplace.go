package privacy

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// Laplace draws noise from the Laplace distribution with mean 0 and scale b = Δ/ε, the mechanism
// that makes a query of L1 sensitivity Δ ε-differentially private.
//
// Its randomness comes from a cryptographically secure generator (crypto/rand by default), not
// from math/rand. Differential privacy assumes the analyst cannot predict or reproduce the noise:
//
//   - a generator with a fixed or guessable seed (a constant, the start time, a process id) can be
//     re-run by the analyst, who then subtracts the exact noise from every answer;
//   - the same seed on every run gives the same noise to two queries whose pools differ by one
//     record, so their difference is that record's exact contribution, with no noise at all;
//   - the state of a statistical generator (PCG, the old additive lagged Fibonacci source) can be
//     reconstructed from a handful of its outputs, for instance noise observed on a query whose
//     true answer the analyst already knows, and then every later draw is predictable.
//
// Each of these turns "ε per query" into "no privacy at all". A CSPRNG's outputs are independent
// of each other and of anything the analyst can see, which is the property the proof uses.
//
// Floating point: inverse-CDF sampling in binary floating point leaves gaps in the set of
// outputs whose positions depend on the true value (Mironov, "On significance of the least
// significant bits for differential privacy", CCS 2012). [Engine] therefore rounds every
// released value to a granularity at least the noise scale's power of two below (see [snap]),
// which is harmless post-processing and removes the low-order bits that attack reads. It is the
// rounding half of Mironov's snapping mechanism, without its formal bound.
type Laplace struct {
	// Rand is the source of random bytes; nil means crypto/rand.Reader. Anything else is for
	// tests only.
	Rand io.Reader
}

// Sample returns one draw of Laplace(0, scale).
func (l Laplace) Sample(scale float64) (float64, error) {
	if !(scale > 0) || math.IsInf(scale, 0) {
		return 0, fmt.Errorf("laplace: scale %v must be positive and finite", scale)
	}
	r := l.Rand
	if r == nil {
		r = rand.Reader
	}
	var buf [8]byte
	if _, err := io.ReadFull(r, buf[:]); err != nil {
		return 0, fmt.Errorf("laplace: read random bytes: %w", err)
	}
	x := binary.LittleEndian.Uint64(buf[:])
	// One bit for the sign, 53 bits for a uniform u in (0, 1), never 0 so log(u) is finite.
	negative := x&1 == 1
	u := (float64(x>>11) + 0.5) / (1 << 53)
	// Inverse CDF of the exponential: |X| = -b·ln(u) is Exp(1/b), and a fair sign makes it Laplace.
	v := -scale * math.Log(u)
	if negative {
		v = -v
	}
	return v, nil
}

// snap rounds v to a multiple of the largest power of two not above scale/4 (at least 1/1024),
// so the released value's low-order bits carry no information about the true value.
func snap(v, scale float64) float64 {
	g := math.Exp2(math.Floor(math.Log2(scale / 4)))
	if g < 1.0/1024 {
		g = 1.0 / 1024
	}
	return math.Round(v/g) * g
}
