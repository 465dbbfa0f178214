package ledger

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/mcpwatch/mcpwatch/event"
)

// Break is one broken link of a chain.
type Break struct {
	// Seq is the entry's seq; 0 when the entry did not decode.
	Seq uint64
	// Index is the entry's position in the input, from 1 (its line in a JSONL file).
	Index int
	// Reason wraps one of ErrMalformed, ErrHashMismatch, ErrBadSignature, ErrUnknownKey,
	// ErrSeqGap, ErrOutOfOrder, ErrDuplicate, ErrPrevMismatch with the details.
	Reason error
}

func (b Break) String() string {
	return fmt.Sprintf("seq %d (entry %d): %v", b.Seq, b.Index, b.Reason)
}

// MaxBreaks bounds the breaks a [Report] lists; BreakCount counts them all.
const MaxBreaks = 100

// Report is what a verification found.
type Report struct {
	Entries  int // entries read
	Verified int // entries whose hash, signature and link to the previous entry all check
	// First and Last are the seqs of the first and last entries read; LastHash the last's hash,
	// worth recording elsewhere: a chain cut short at its end still verifies, and only a seq and
	// hash kept outside it shows the cut.
	First, Last uint64
	LastHash    string
	// Keys counts entries per signing key id.
	Keys map[string]int
	// UnknownKeys counts entries whose key was not given, when unknown keys are allowed.
	UnknownKeys int
	Breaks      []Break // the first MaxBreaks
	BreakCount  int
}

// OK reports whether the chain verified without a break.
func (r *Report) OK() bool { return r.BreakCount == 0 }

// FirstBreak is the first broken link, or nil.
func (r *Report) FirstBreak() *Break {
	if len(r.Breaks) == 0 {
		return nil
	}
	return &r.Breaks[0]
}

// Verifier checks a chain entry by entry, in order, holding only the previous link: a chain of
// any length verifies in constant memory.
type Verifier struct {
	keys         map[string]ed25519.PublicKey
	resume       bool
	allowUnknown bool
	have         bool
	prevSeq      uint64
	prevHash     string
	rep          Report
}

// VerifierOption adjusts a [Verifier].
type VerifierOption func(*Verifier)

// Resume makes the first entry's seq and prev_hash be taken as given: for a window of a chain,
// not a chain from its start.
func Resume() VerifierOption { return func(v *Verifier) { v.resume = true } }

// AllowUnknownKeys counts entries signed by keys not given instead of reporting them broken;
// their hash and links are still checked.
func AllowUnknownKeys() VerifierOption { return func(v *Verifier) { v.allowUnknown = true } }

// NewVerifier returns a verifier trusting keys (key id → public key).
func NewVerifier(keys map[string]ed25519.PublicKey, opts ...VerifierOption) *Verifier {
	v := &Verifier{keys: keys, rep: Report{Keys: map[string]int{}}}
	for _, o := range opts {
		o(v)
	}
	return v
}

// Add decodes and checks the next entry as it was stored (one line of an export, one record of
// the audit topic).
func (v *Verifier) Add(raw []byte) {
	var e event.AuditEntry
	if err := event.DecodeAudit(raw, &e); err != nil {
		v.rep.Entries++
		v.fail(0, fmt.Errorf("%w: %v", ErrMalformed, err))
		// Take it as the entry expected here, whose hash is unknown: the next entry's seq is
		// still checked, its prev_hash cannot be.
		v.have, v.prevHash = true, ""
		v.prevSeq++
		return
	}
	v.AddEntry(&e)
}

// AddEntry checks the next entry.
func (v *Verifier) AddEntry(e *event.AuditEntry) {
	v.rep.Entries++
	if v.rep.Entries == 1 {
		v.rep.First = e.Seq
	}
	v.rep.Last, v.rep.LastHash = e.Seq, e.Hash
	v.rep.Keys[e.KeyID]++
	err := v.check(e)
	if errors.Is(err, ErrUnknownKey) && v.allowUnknown {
		v.rep.UnknownKeys++
		err = nil
	}
	if err != nil {
		v.fail(e.Seq, err)
	} else {
		v.rep.Verified++
	}
	// Re-anchor on this entry, broken or not, so one break is reported once rather than as a
	// cascade over every later entry.
	v.have, v.prevSeq, v.prevHash = true, e.Seq, e.Hash
}

func (v *Verifier) check(e *event.AuditEntry) error {
	switch {
	case !v.have && !v.resume && e.Seq != 1:
		return fmt.Errorf("%w: the chain starts at seq %d, want 1 (entries 1..%d are missing)", ErrSeqGap, e.Seq, e.Seq-1)
	case !v.have:
	case e.Seq == v.prevSeq:
		return fmt.Errorf("%w: seq %d appears twice", ErrDuplicate, e.Seq)
	case e.Seq < v.prevSeq:
		return fmt.Errorf("%w: seq %d follows seq %d", ErrOutOfOrder, e.Seq, v.prevSeq)
	case e.Seq > v.prevSeq+1:
		return fmt.Errorf("%w: seq %d follows seq %d (entries %d..%d are missing)", ErrSeqGap, e.Seq, v.prevSeq, v.prevSeq+1, e.Seq-1)
	}
	if err := checkEntry(e, v.keys); err != nil {
		return err
	}
	switch {
	case !v.have && !v.resume && e.PrevHash != ZeroHash:
		return fmt.Errorf("%w: entry 1 must have prev_hash %s", ErrPrevMismatch, short(ZeroHash))
	case v.have && v.prevHash != "" && e.PrevHash != v.prevHash:
		return fmt.Errorf("%w: prev_hash %s, but entry %d's hash is %s", ErrPrevMismatch, short(e.PrevHash), v.prevSeq, short(v.prevHash))
	}
	if n := len(e.Next); int(e.Partition) >= n || e.Next[e.Partition] != e.Offset+1 {
		return fmt.Errorf("%w: next offsets do not continue after the entry's own action (partition %d, offset %d)", ErrMalformed, e.Partition, e.Offset)
	}
	return nil
}

func (v *Verifier) fail(seq uint64, err error) {
	v.rep.BreakCount++
	if len(v.rep.Breaks) < MaxBreaks {
		v.rep.Breaks = append(v.rep.Breaks, Break{Seq: seq, Index: v.rep.Entries, Reason: err})
	}
}

// Report returns what was found so far.
func (v *Verifier) Report() Report { return v.rep }

// Source passes stored entries, in chain order, to fn; it stops at fn's first error.
type Source func(ctx context.Context, fn func(raw []byte) error) error

// maxLine bounds one entry in a JSONL file: an action record is a few kilobytes, and a file that
// is not an export must not make the verifier take all memory.
const maxLine = 16 << 20

// FileSource reads a JSONL export (one entry a line; empty lines are skipped).
func FileSource(path string) Source {
	return func(ctx context.Context, fn func([]byte) error) error {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("open audit export: %w", err)
		}
		defer func() { _ = f.Close() }()
		return ReaderSource(f)(ctx, fn)
	}
}

// ReaderSource reads JSONL entries from r.
func ReaderSource(r io.Reader) Source {
	return func(ctx context.Context, fn func([]byte) error) error {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 64<<10), maxLine)
		line := 0
		for sc.Scan() {
			line++
			if len(sc.Bytes()) == 0 {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(sc.Bytes()); err != nil {
				return err
			}
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("read audit export after line %d: %w", line, err)
		}
		return nil
	}
}

// Verify checks every entry src yields with keys and returns the report. An error means the
// source could not be read to its end (the report covers what was read).
func Verify(ctx context.Context, src Source, keys map[string]ed25519.PublicKey, opts ...VerifierOption) (Report, error) {
	v := NewVerifier(keys, opts...)
	err := src(ctx, func(raw []byte) error { v.Add(raw); return nil })
	return v.Report(), err
}

// Export writes every entry src yields to w, one a line, unchanged, and returns how many.
func Export(ctx context.Context, src Source, w io.Writer) (int, error) {
	bw := bufio.NewWriter(w)
	n := 0
	err := src(ctx, func(raw []byte) error {
		n++
		if _, err := bw.Write(raw); err != nil {
			return err
		}
		return bw.WriteByte('\n')
	})
	if err != nil {
		return n, err
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("write export: %w", err)
	}
	return n, nil
}

// ErrBroken is returned by [CheckReport] for a chain with a broken link.
var ErrBroken = errors.New("audit chain broken")

// WriteReport prints rep for an operator: counts, keys, the last link, and each break (the
// first MaxBreaks).
func WriteReport(w io.Writer, rep Report) {
	fmt.Fprintf(w, "entries: %d read, %d verified", rep.Entries, rep.Verified)
	if rep.Entries > 0 {
		fmt.Fprintf(w, " (seq %d..%d)", rep.First, rep.Last)
	}
	fmt.Fprintln(w)
	for id, n := range rep.Keys {
		fmt.Fprintf(w, "key %s: %d entries\n", id, n)
	}
	if rep.UnknownKeys > 0 {
		fmt.Fprintf(w, "entries signed by keys not given: %d (hash and links checked, signatures not)\n", rep.UnknownKeys)
	}
	if rep.Entries > 0 {
		fmt.Fprintf(w, "last: seq %d hash %s (record it elsewhere: a chain cut at its end verifies)\n", rep.Last, rep.LastHash)
	}
	if rep.OK() {
		fmt.Fprintln(w, "chain: ok")
		return
	}
	fmt.Fprintf(w, "chain: BROKEN, %d broken links; first at %s\n", rep.BreakCount, rep.FirstBreak())
	for _, b := range rep.Breaks[1:] {
		fmt.Fprintf(w, "  also %s\n", b)
	}
}

// CheckReport is nil for a chain that verified, else an error wrapping [ErrBroken] naming the
// first break.
func CheckReport(rep Report) error {
	if rep.OK() {
		return nil
	}
	return fmt.Errorf("%w at seq %d: %v (see docs/response.md, \"verify says broken\")", ErrBroken, rep.FirstBreak().Seq, rep.FirstBreak().Reason)
}

// ExportFile writes src to a new file at path (0600: the trail names principals), refusing to
// overwrite one, and returns how many entries it wrote.
func ExportFile(ctx context.Context, src Source, path string) (int, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("export: %w", err)
	}
	n, err := Export(ctx, src, f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("export: %w", cerr)
	}
	return n, err
}
