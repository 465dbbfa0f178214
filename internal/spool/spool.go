// Package spool is a bounded, crash-safe, append-only FIFO of byte records on local disk: the
// place audit events wait while Kafka is unreachable.
//
// Records are appended to segment files (16 MiB by default) named by a increasing sequence
// number; each record is framed with its length, its append time and a CRC32C. One consumer reads
// them in order with [Spool.Peek] and releases them with [Spool.Ack]; a segment file is deleted
// only once every record in it has been acknowledged, so a crash re-delivers rather than loses
// (at-least-once). [Open] rescans the segments, so a spool survives restarts; a record torn by a
// crash mid-write is cut off the tail. A clean [Spool.Close] saves the read position so a restart
// re-delivers nothing; after a crash, the acknowledged prefix of the oldest segment is delivered
// again.
//
// Durability is chosen with [WithSync]: see [SyncPolicy].
package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrFull is returned by [Spool.Append] when the record would take the spool past its maximum
// size. Nothing was written.
var ErrFull = errors.New("spool: full")

// ErrTooLarge is returned by [Spool.Append] for a record that can never fit in one segment.
var ErrTooLarge = errors.New("spool: record larger than a segment")

// ErrClosed is returned by operations on a closed spool.
var ErrClosed = errors.New("spool: closed")

// ErrCorrupt is returned by [Spool.Peek] when a record that was intact at [Open] no longer
// passes its CRC check (the disk changed under the spool).
var ErrCorrupt = errors.New("spool: corrupt record")

// SyncPolicy says when appended records are forced to stable storage with fsync.
//
// Every policy survives a crash of the process: appended bytes are in the kernel's page cache.
// They differ on a crash of the machine (power loss, kernel panic):
//   - [SyncAlways] loses nothing that Append acknowledged, at the price of one fsync per record
//     (hundreds of microseconds to milliseconds each, serialized);
//   - [SyncInterval] loses at most the records appended in the last interval; Append costs one
//     write(2). This is the default, at 100 ms;
//   - [SyncNever] leaves flushing to the kernel (typically up to 30 s of records at risk).
//
// Segments are fsynced when they fill and on [Spool.Close] under every policy but SyncNever.
type SyncPolicy int

const (
	SyncInterval SyncPolicy = iota
	SyncAlways
	SyncNever
)

// String returns the policy's configuration name.
func (p SyncPolicy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncNever:
		return "none"
	default:
		return "interval"
	}
}

// ParseSyncPolicy parses "always", "interval" or "none".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch s {
	case "always":
		return SyncAlways, nil
	case "interval", "":
		return SyncInterval, nil
	case "none":
		return SyncNever, nil
	}
	return 0, fmt.Errorf("spool: unknown sync policy %q (want always, interval or none)", s)
}

// Defaults.
const (
	DefaultMaxBytes     = 1 << 30
	DefaultSegmentBytes = 16 << 20
	DefaultSyncInterval = 100 * time.Millisecond
)

type options struct {
	maxBytes     int64
	segmentBytes int64
	sync         SyncPolicy
	interval     time.Duration
	now          func() time.Time
}

// Option configures [Open].
type Option func(*options)

// WithMaxBytes bounds the spool's size on disk, segment headers and frames included.
func WithMaxBytes(n int64) Option { return func(o *options) { o.maxBytes = n } }

// WithSegmentBytes sets the size at which a new segment file is started. The largest record a
// spool takes is a segment less its headers.
func WithSegmentBytes(n int64) Option { return func(o *options) { o.segmentBytes = n } }

// WithSync sets the fsync policy; interval matters only for [SyncInterval].
func WithSync(p SyncPolicy, interval time.Duration) Option {
	return func(o *options) { o.sync, o.interval = p, interval }
}

// withClock replaces time.Now in tests.
func withClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

type segment struct {
	seq  uint64
	size int64 // valid bytes, header included
}

// Stats describes what a spool holds.
type Stats struct {
	Bytes   int64     // on disk, including acknowledged records of the oldest segment
	Records int64     // not yet acknowledged
	Oldest  time.Time // append time of the oldest unacknowledged record; zero when empty
	// TornBytes were cut off segment tails at [Open]: a record that was being written when the
	// process or machine died, or corruption.
	TornBytes int64
}

// Spool is an on-disk FIFO. Append is safe for concurrent use; Peek and Ack are for one consumer
// at a time.
type Spool struct {
	dir  string
	o    options
	lock *os.File

	rmu sync.Mutex // serializes consumers (Peek/Ack)

	mu      sync.Mutex
	segs    []segment // segs[0] is read, segs[len-1] is appended to
	tail    *os.File
	buf     []byte
	bytes   int64
	records int64
	readOff int64 // in segs[0]
	oldest  int64 // unix nanos of the record at readOff
	peeked  []int64
	torn    int64
	dirty   bool
	closed  bool
	rf      *os.File // read handle on segs[0]
	rseq    uint64

	stop chan struct{}
	done chan struct{}
}

const (
	segExt     = ".seg"
	cursorName = "cursor"
	lockName   = "LOCK"
)

func segName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, segExt) }

// Open opens or creates the spool in dir, recovering what an earlier process left there. Only
// one process may hold a spool directory open.
func Open(dir string, opts ...Option) (*Spool, error) {
	o := options{maxBytes: DefaultMaxBytes, segmentBytes: DefaultSegmentBytes, sync: SyncInterval,
		interval: DefaultSyncInterval, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	minSeg := int64(len(magic) + frameHeader + 1)
	switch {
	case o.segmentBytes < minSeg:
		return nil, fmt.Errorf("spool: segment size %d below %d", o.segmentBytes, minSeg)
	case o.maxBytes < o.segmentBytes:
		return nil, fmt.Errorf("spool: max size %d below segment size %d", o.maxBytes, o.segmentBytes)
	case o.sync == SyncInterval && o.interval <= 0:
		return nil, fmt.Errorf("spool: sync interval %v", o.interval)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	lock, err := lockDir(filepath.Join(dir, lockName))
	if err != nil {
		return nil, err
	}
	s := &Spool{dir: dir, o: o, lock: lock}
	if err := s.recover(); err != nil {
		s.closeFiles()
		_ = lock.Close()
		return nil, err
	}
	if o.sync == SyncInterval {
		s.stop, s.done = make(chan struct{}), make(chan struct{})
		go s.syncLoop()
	}
	return s, nil
}

func (s *Spool) maxRecord() int { return int(s.o.segmentBytes) - len(magic) - frameHeader }

func (s *Spool) recover() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, segExt) {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, segExt), 10, 64)
		if err != nil {
			continue
		}
		s.segs = append(s.segs, segment{seq: seq})
	}
	sort.Slice(s.segs, func(i, j int) bool { return s.segs[i].seq < s.segs[j].seq })
	curSeq, curOff, haveCursor := s.takeCursor()

	for i := range s.segs {
		sg := &s.segs[i]
		path := filepath.Join(s.dir, segName(sg.seq))
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("spool: read %s: %w", path, err)
		}
		var cnt int64
		valid, err := ReadSegment(b, s.maxRecord(), func([]byte, int64) { cnt++ })
		if haveCursor && i == 0 && sg.seq == curSeq {
			// Records before the saved cursor were acknowledged before a clean close.
			if after, ok := countFrom(b[:valid], curOff, s.maxRecord()); ok {
				cnt = after
				s.readOff = curOff
			}
		}
		s.records += cnt
		if err != nil {
			s.torn += int64(len(b)) - valid
			if valid < int64(len(magic)) {
				valid = 0
			}
			if i == len(s.segs)-1 {
				// Only the tail is appended to: cut the torn record so the next frame lands on a
				// frame boundary.
				if err := os.Truncate(path, valid); err != nil {
					return fmt.Errorf("spool: truncate torn tail of %s: %w", path, err)
				}
			}
		}
		sg.size = valid
	}
	if s.readOff == 0 {
		s.readOff = int64(len(magic))
	}
	if len(s.segs) == 0 {
		s.segs = append(s.segs, segment{seq: 1})
	}
	last := &s.segs[len(s.segs)-1]
	f, err := os.OpenFile(filepath.Join(s.dir, segName(last.seq)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.tail = f
	if last.size == 0 {
		// New, or its header was torn: (re)write the header.
		if err := f.Truncate(0); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		if _, err := f.Write([]byte(magic)); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		last.size = int64(len(magic))
		if err := s.syncNew(f); err != nil {
			return err
		}
	}
	// Disk usage: non-tail segments may hold bytes past their valid prefix.
	for i, sg := range s.segs {
		if i == len(s.segs)-1 {
			s.bytes += sg.size
			continue
		}
		if fi, err := os.Stat(filepath.Join(s.dir, segName(sg.seq))); err == nil {
			s.bytes += fi.Size()
		}
	}
	if err := s.dropConsumedHead(); err != nil {
		return err
	}
	return s.loadOldest()
}

// loadOldest reads the append time of the record at the read position. Called with mu held.
func (s *Spool) loadOldest() error {
	s.oldest = 0
	if s.records == 0 {
		return nil
	}
	if err := s.openHead(s.segs[0].seq); err != nil {
		return err
	}
	var h [frameHeader]byte
	if _, err := s.rf.ReadAt(h[:], s.readOff); err != nil {
		return fmt.Errorf("spool: read: %w", err)
	}
	s.oldest = int64(binary.LittleEndian.Uint64(h[8:16]))
	return nil
}

// countFrom counts the records of valid segment contents b from offset off on. ok is false when
// off is not a frame boundary.
func countFrom(b []byte, off int64, maxRecord int) (n int64, ok bool) {
	pos := int64(len(magic))
	for pos < int64(len(b)) {
		if pos > off && n == 0 {
			return 0, false // off fell inside a frame
		}
		if pos >= off {
			n++
		}
		f, err := readFrame(b[pos:], maxRecord)
		if err != nil {
			return 0, false
		}
		pos += f.size
	}
	return n, pos >= off && (n > 0 || pos == off)
}

// takeCursor reads and removes the read position saved by Close. Removing it at once means a
// later crash can never apply a stale cursor to a segment that reuses its sequence number.
func (s *Spool) takeCursor() (seq uint64, off int64, ok bool) {
	path := filepath.Join(s.dir, cursorName)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	_ = os.Remove(path)
	if len(b) != 20 || crc32.Checksum(b[:16], castagnoli) != binary.LittleEndian.Uint32(b[16:]) {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint64(b[0:8]), int64(binary.LittleEndian.Uint64(b[8:16])), true
}

// Append adds rec at the end of the spool. It returns [ErrFull] when the spool has no room for
// rec and [ErrTooLarge] when no segment could hold it. Under [SyncAlways] the record is on stable
// storage when Append returns.
func (s *Spool) Append(rec []byte) error {
	if len(rec) > s.maxRecord() {
		return ErrTooLarge
	}
	need := int64(frameHeader + len(rec))
	now := s.o.now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	tail := &s.segs[len(s.segs)-1]
	roll := tail.size+need > s.o.segmentBytes
	extra := need
	if roll {
		extra += int64(len(magic))
	}
	if s.bytes+extra > s.o.maxBytes {
		return ErrFull
	}
	if roll {
		if err := s.roll(); err != nil {
			return err
		}
		tail = &s.segs[len(s.segs)-1]
	}
	s.buf = appendFrame(s.buf[:0], rec, now)
	if n, err := s.tail.Write(s.buf); err != nil {
		// A short write leaves a partial frame; cut it so later frames stay aligned.
		if n > 0 {
			_ = s.tail.Truncate(tail.size)
		}
		return fmt.Errorf("spool: append: %w", err)
	}
	tail.size += need
	s.bytes += need
	if s.records == 0 {
		s.oldest = now
	}
	s.records++
	switch s.o.sync {
	case SyncAlways:
		if err := s.tail.Sync(); err != nil {
			return fmt.Errorf("spool: fsync: %w", err)
		}
	case SyncInterval:
		s.dirty = true
	}
	return nil
}

// roll closes the full tail segment and starts the next. Called with mu held.
func (s *Spool) roll() error {
	if s.o.sync != SyncNever {
		if err := s.tail.Sync(); err != nil {
			return fmt.Errorf("spool: fsync: %w", err)
		}
	}
	seq := s.segs[len(s.segs)-1].seq + 1
	f, err := os.OpenFile(filepath.Join(s.dir, segName(seq)), os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("spool: new segment: %w", err)
	}
	if _, err := f.Write([]byte(magic)); err != nil {
		_ = f.Close()
		return fmt.Errorf("spool: new segment: %w", err)
	}
	if err := s.syncNew(f); err != nil {
		_ = f.Close()
		return err
	}
	_ = s.tail.Close()
	s.tail = f
	s.segs = append(s.segs, segment{seq: seq, size: int64(len(magic))})
	s.bytes += int64(len(magic))
	s.dirty = false
	return nil
}

// syncNew makes a new segment file and its directory entry durable.
func (s *Spool) syncNew(f *os.File) error {
	if s.o.sync == SyncNever {
		return nil
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("spool: fsync: %w", err)
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: fsync dir: %w", err)
	}
	return nil
}

func (s *Spool) syncLoop() {
	defer close(s.done)
	t := time.NewTicker(s.o.interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		f, dirty := s.tail, s.dirty
		s.dirty = false
		s.mu.Unlock()
		if dirty {
			// Outside mu so appends go on during the fsync. A concurrent roll fsyncs and closes f
			// itself; the error from syncing a closed file is then moot.
			_ = f.Sync()
		}
	}
}

// Peek returns up to max records from the head of the spool, oldest first, without removing
// them; it returns fewer when the next record is in another segment, and none when the spool is
// empty. The records stay valid until the next Peek or Ack. Call [Spool.Ack] with how many of
// them were handled; the next Peek starts again at the first unacknowledged record.
func (s *Spool) Peek(max int) ([][]byte, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.peeked = s.peeked[:0]
	head, off := s.segs[0], s.readOff
	if err := s.openHead(head.seq); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	rf := s.rf
	s.mu.Unlock()
	// head.size bytes of segs[0] are written and never change until Ack, which this consumer
	// alone calls: read them without holding mu.
	avail := head.size - off
	if avail <= 0 || max <= 0 {
		return nil, nil
	}
	chunk := min(avail, 1<<20)
	b := make([]byte, chunk)
	if _, err := rf.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("spool: read: %w", err)
	}
	var out [][]byte
	var pos int64
	for len(out) < max && pos < chunk {
		f, err := readFrame(b[pos:], s.maxRecord())
		if err != nil {
			if len(out) > 0 {
				break // the next frame continues past this chunk
			}
			// One frame larger than the chunk: read exactly it.
			if chunk-pos >= frameHeader {
				n := int64(binary.LittleEndian.Uint32(b[pos:]))
				if whole := frameHeader + n; whole <= avail-pos && whole > chunk-pos {
					b = make([]byte, whole)
					if _, err := rf.ReadAt(b, off+pos); err != nil {
						return nil, fmt.Errorf("spool: read: %w", err)
					}
					if f, err = readFrame(b, s.maxRecord()); err == nil {
						out = append(out, f.rec)
						s.peeked = append(s.peeked, f.size)
						break
					}
				}
			}
			return nil, fmt.Errorf("%w in segment %d at offset %d", ErrCorrupt, head.seq, off+pos)
		}
		out = append(out, f.rec)
		s.peeked = append(s.peeked, f.size)
		pos += f.size
	}
	return out, nil
}

// openHead points rf at segment seq. Called with mu held.
func (s *Spool) openHead(seq uint64) error {
	if s.rf != nil && s.rseq == seq {
		return nil
	}
	if s.rf != nil {
		_ = s.rf.Close()
		s.rf = nil
	}
	f, err := os.Open(filepath.Join(s.dir, segName(seq)))
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.rf, s.rseq = f, seq
	return nil
}

// Ack removes the first n records returned by the last [Spool.Peek]. A segment file is deleted
// once all its records are acknowledged.
func (s *Spool) Ack(n int) error {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if n > len(s.peeked) || n < 0 {
		return fmt.Errorf("spool: ack %d of %d peeked records", n, len(s.peeked))
	}
	for _, sz := range s.peeked[:n] {
		s.readOff += sz
	}
	s.records -= int64(n)
	s.peeked = s.peeked[:0]
	if err := s.dropConsumedHead(); err != nil {
		return err
	}
	return s.loadOldest()
}

// dropConsumedHead deletes fully acknowledged segments, and empties the tail when everything is
// acknowledged. Called with mu held.
func (s *Spool) dropConsumedHead() error {
	for len(s.segs) > 1 && s.readOff >= s.segs[0].size {
		path := filepath.Join(s.dir, segName(s.segs[0].seq))
		fi, statErr := os.Stat(path)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("spool: remove acknowledged segment: %w", err)
		}
		if statErr == nil {
			s.bytes -= fi.Size()
		} else {
			s.bytes -= s.segs[0].size
		}
		s.segs = s.segs[1:]
		s.readOff = int64(len(magic))
	}
	if len(s.segs) == 1 && s.records == 0 && s.segs[0].size > int64(len(magic)) && s.readOff >= s.segs[0].size {
		// Everything acknowledged: reuse the tail from its start. If a crash undoes the truncate,
		// the records come back: at-least-once.
		if err := s.tail.Truncate(int64(len(magic))); err != nil {
			return fmt.Errorf("spool: reset: %w", err)
		}
		s.bytes -= s.segs[0].size - int64(len(magic))
		s.segs[0].size = int64(len(magic))
		s.readOff = int64(len(magic))
	}
	return nil
}

// Stats returns the spool's current size and age.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Bytes: s.bytes, Records: s.records, TornBytes: s.torn}
	if s.records > 0 && s.oldest != 0 {
		st.Oldest = time.Unix(0, s.oldest)
	}
	return st
}

// Len returns the number of unacknowledged records.
func (s *Spool) Len() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.records
}

// Close fsyncs the tail (unless [SyncNever]), saves the read position for the next [Open] and
// releases the directory.
func (s *Spool) Close() error {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	if s.stop != nil {
		close(s.stop)
		<-s.done
	}
	var errs []error
	if s.o.sync != SyncNever {
		if err := s.tail.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("spool: fsync: %w", err))
		}
	}
	if s.readOff > int64(len(magic)) {
		if err := s.saveCursor(); err != nil {
			errs = append(errs, err)
		}
	}
	s.closeFiles()
	if err := s.lock.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *Spool) saveCursor() error {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint64(b[0:8], s.segs[0].seq)
	binary.LittleEndian.PutUint64(b[8:16], uint64(s.readOff))
	binary.LittleEndian.PutUint32(b[16:20], crc32.Checksum(b[:16], castagnoli))
	tmp := filepath.Join(s.dir, cursorName+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("spool: save cursor: %w", err)
	}
	if s.o.sync != SyncNever {
		if f, err := os.Open(tmp); err == nil {
			_ = f.Sync()
			_ = f.Close()
		}
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, cursorName)); err != nil {
		return fmt.Errorf("spool: save cursor: %w", err)
	}
	return nil
}

func (s *Spool) closeFiles() {
	if s.tail != nil {
		_ = s.tail.Close()
	}
	if s.rf != nil {
		_ = s.rf.Close()
	}
}

var _ io.Closer = (*Spool)(nil)
