package spool

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T, dir string, opts ...Option) *Spool {
	t.Helper()
	s, err := Open(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// crash drops a spool the way a killed process does: no fsync, no saved cursor.
func crash(s *Spool) {
	if s.stop != nil {
		close(s.stop)
		<-s.done
	}
	s.closeFiles()
	_ = s.lock.Close()
}

func rec(i int) []byte { return fmt.Appendf(nil, "record-%06d", i) }

func appendN(t *testing.T, s *Spool, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := s.Append(rec(i)); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}

// drain reads and acknowledges everything, batch records at a time.
func drain(t *testing.T, s *Spool, batch int) [][]byte {
	t.Helper()
	var out [][]byte
	for {
		recs, err := s.Peek(batch)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return out
		}
		for _, r := range recs {
			out = append(out, bytes.Clone(r))
		}
		if err := s.Ack(len(recs)); err != nil {
			t.Fatal(err)
		}
	}
}

func wantRange(t *testing.T, got [][]byte, from, to int) {
	t.Helper()
	if len(got) != to-from {
		t.Fatalf("got %d records, want %d", len(got), to-from)
	}
	for i, r := range got {
		if !bytes.Equal(r, rec(from+i)) {
			t.Fatalf("record %d = %q, want %q", i, r, rec(from+i))
		}
	}
}

// Records come out in the order they went in, across segment boundaries; a broken FIFO would
// reorder a principal's audit trail.
func TestOrderAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, WithSegmentBytes(256))
	defer s.Close()
	appendN(t, s, 0, 100)
	if n := countSegs(t, dir); n < 5 {
		t.Fatalf("%d segments, want rollover into several", n)
	}
	if st := s.Stats(); st.Records != 100 {
		t.Fatalf("stats %+v", st)
	}
	wantRange(t, drain(t, s, 7), 0, 100)
	if n := countSegs(t, dir); n != 1 {
		t.Fatalf("%d segments after draining, want only the tail", n)
	}
	if st := s.Stats(); st.Records != 0 || st.Bytes != int64(len(magic)) || !st.Oldest.IsZero() {
		t.Fatalf("stats after drain %+v", st)
	}
}

func countSegs(t *testing.T, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segExt))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

// An unacknowledged Peek delivers the same records again: a failed delivery must not lose them.
func TestPeekWithoutAckRedelivers(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	appendN(t, s, 0, 10)
	a, err := s.Peek(4)
	if err != nil || len(a) != 4 {
		t.Fatalf("peek: %d, %v", len(a), err)
	}
	if err := s.Ack(2); err != nil {
		t.Fatal(err)
	}
	wantRange(t, drain(t, s, 3), 2, 10)
	if err := s.Ack(1); err == nil {
		t.Fatal("ack of records never peeked succeeded")
	}
}

// A clean restart resumes after the last acknowledged record: nothing lost, nothing repeated.
func TestRestartClean(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, WithSegmentBytes(256))
	appendN(t, s, 0, 50)
	recs, _ := s.Peek(5)
	if err := s.Ack(len(recs)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, WithSegmentBytes(256))
	defer s.Close()
	if n := s.Len(); n != 45 {
		t.Fatalf("%d records after restart, want 45", n)
	}
	appendN(t, s, 50, 60)
	wantRange(t, drain(t, s, 100), 5, 60)
}

// After a crash the spool re-delivers the acknowledged part of the oldest segment (at-least-once)
// and everything after it, in order.
func TestRestartAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, WithSegmentBytes(1<<20))
	appendN(t, s, 0, 20)
	recs, _ := s.Peek(5)
	if err := s.Ack(len(recs)); err != nil {
		t.Fatal(err)
	}
	crash(s)
	s = open(t, dir, WithSegmentBytes(1<<20))
	defer s.Close()
	wantRange(t, drain(t, s, 100), 0, 20)
}

// A frame cut short by a crash is cut off at reopen; records before it survive and later appends
// land on a frame boundary.
func TestTornTail(t *testing.T) {
	for _, cut := range []int{1, frameHeader - 1, frameHeader, frameHeader + 3} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir)
			appendN(t, s, 0, 10)
			crash(s)
			full := appendFrame(nil, rec(10), time.Now().UnixNano())
			f, err := os.OpenFile(filepath.Join(dir, segName(1)), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(full[:cut]); err != nil {
				t.Fatal(err)
			}
			f.Close()

			s = open(t, dir)
			defer s.Close()
			if st := s.Stats(); st.Records != 10 || st.TornBytes != int64(cut) {
				t.Fatalf("stats %+v, want 10 records and %d torn bytes", st, cut)
			}
			appendN(t, s, 10, 15)
			wantRange(t, drain(t, s, 3), 0, 15)
		})
	}
}

// A flipped bit inside a record is caught by the CRC: the reader stops there instead of handing
// out altered audit data.
func TestCorruptRecordNotDelivered(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	appendN(t, s, 0, 3)
	crash(s)
	path := filepath.Join(dir, segName(1))
	b, _ := os.ReadFile(path)
	second := len(magic) + frameHeader + len(rec(0))
	b[second+frameHeader+2] ^= 0x40
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	wantRange(t, drain(t, s, 10), 0, 1)
}

// When the next record would pass MaxBytes, Append refuses it with ErrFull and writes nothing;
// acknowledging frees room again.
func TestFull(t *testing.T) {
	dir := t.TempDir()
	frame := int64(frameHeader + len(rec(0)))
	seg := int64(len(magic)) + 4*frame
	s := open(t, dir, WithSegmentBytes(seg), WithMaxBytes(2*seg))
	defer s.Close()
	appendN(t, s, 0, 8)
	if err := s.Append(rec(8)); !errors.Is(err, ErrFull) {
		t.Fatalf("append to a full spool: %v, want ErrFull", err)
	}
	if st := s.Stats(); st.Records != 8 || st.Bytes != 2*seg {
		t.Fatalf("stats %+v", st)
	}
	recs, _ := s.Peek(4)
	if err := s.Ack(len(recs)); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 8, 12)
	wantRange(t, drain(t, s, 100), 4, 12)
	if err := s.Append(make([]byte, seg)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized record: %v", err)
	}
}

// Concurrent appenders under -race: every record arrives once and each writer's records keep
// their order.
func TestConcurrentAppend(t *testing.T) {
	s := open(t, t.TempDir(), WithSegmentBytes(4096), WithSync(SyncInterval, time.Millisecond))
	defer s.Close()
	const writers, each = 8, 300
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := s.Append(fmt.Appendf(nil, "%d/%d", w, i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var got [][]byte
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		got = append(got, drain(t, s, 50)...)
	}
	next := make([]int, writers)
	for _, r := range got {
		var w, i int
		if _, err := fmt.Sscanf(string(r), "%d/%d", &w, &i); err != nil {
			t.Fatal(err)
		}
		if i != next[w] {
			t.Fatalf("writer %d: got record %d, want %d", w, i, next[w])
		}
		next[w]++
	}
	for w, n := range next {
		if n != each {
			t.Fatalf("writer %d: %d records, want %d", w, n, each)
		}
	}
}

// The oldest-record age follows the head of the queue.
func TestOldest(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := open(t, t.TempDir(), withClock(func() time.Time { return now }))
	defer s.Close()
	if err := s.Append(rec(0)); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	if err := s.Append(rec(1)); err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Oldest; !got.Equal(time.Unix(1_700_000_000, 0)) {
		t.Fatalf("oldest %v", got)
	}
	_, _ = s.Peek(1)
	if err := s.Ack(1); err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Oldest; !got.Equal(now) {
		t.Fatalf("oldest after ack %v, want %v", got, now)
	}
}

// Two processes appending to one directory would interleave frames; the second Open is refused.
func TestExclusive(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	if s2, err := Open(dir); err == nil {
		s2.Close()
		t.Fatal("second Open of a held spool succeeded")
	}
}

// Every sync policy round-trips records through a restart.
func TestSyncPolicies(t *testing.T) {
	for _, p := range []SyncPolicy{SyncAlways, SyncInterval, SyncNever} {
		t.Run(p.String(), func(t *testing.T) {
			got, err := ParseSyncPolicy(p.String())
			if err != nil || got != p {
				t.Fatalf("parse %q: %v %v", p, got, err)
			}
			dir := t.TempDir()
			s := open(t, dir, WithSync(p, 10*time.Millisecond), WithSegmentBytes(128))
			appendN(t, s, 0, 20)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = open(t, dir, WithSync(p, 10*time.Millisecond), WithSegmentBytes(128))
			defer s.Close()
			wantRange(t, drain(t, s, 3), 0, 20)
		})
	}
	if _, err := ParseSyncPolicy("sometimes"); err == nil {
		t.Fatal("bad policy parsed")
	}
}

// FuzzReadSegment: arbitrary bytes never panic the segment reader, and every record it yields
// carries a matching CRC (checked here independently of readFrame).
func FuzzReadSegment(f *testing.F) {
	good := []byte(magic)
	for i := range 3 {
		good = appendFrame(good, rec(i), int64(i))
	}
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add([]byte(magic))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pos := len(magic)
		valid, _ := ReadSegment(b, 1<<16, func(r []byte, ts int64) {
			h := b[pos : pos+frameHeader]
			c := crc32.Update(0, castagnoli, h[0:4])
			c = crc32.Update(c, castagnoli, h[8:16])
			c = crc32.Update(c, castagnoli, r)
			if c != uint32(h[4])|uint32(h[5])<<8|uint32(h[6])<<16|uint32(h[7])<<24 {
				t.Fatalf("record at %d yielded with a bad CRC", pos)
			}
			if !bytes.Equal(r, b[pos+frameHeader:pos+frameHeader+len(r)]) {
				t.Fatalf("record at %d is not the bytes at its offset", pos)
			}
			pos += frameHeader + len(r)
		})
		if valid > int64(len(b)) || (valid > 0 && valid != int64(pos)) {
			t.Fatalf("valid prefix %d, frames end at %d, input %d bytes", valid, pos, len(b))
		}
	})
}

func BenchmarkSpoolAppend(b *testing.B) {
	rec := bytes.Repeat([]byte("x"), 700) // about one encoded audit event
	for _, p := range []SyncPolicy{SyncInterval, SyncNever, SyncAlways} {
		b.Run(p.String(), func(b *testing.B) {
			s, err := Open(b.TempDir(), WithSync(p, DefaultSyncInterval), WithMaxBytes(8<<30))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.SetBytes(int64(len(rec)))
			for b.Loop() {
				if err := s.Append(rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
