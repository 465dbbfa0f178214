package spool

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
)

// A segment file is a magic header followed by frames. A frame is
//
//	length   uint32 LE  payload length
//	crc      uint32 LE  CRC32C (Castagnoli) over length, unix-nanos and payload
//	unixnano int64  LE  when the record was appended (for the oldest-record-age metric)
//	payload  [length]byte
//
// The CRC covers the length so that a torn or corrupted length field is detected instead of
// making the reader skip to a wrong frame boundary.
const (
	magic       = "MCPSPL1\n"
	frameHeader = 16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errTorn marks bytes at the end of a segment that are not a whole, valid frame: a write cut short
// by a crash, or corruption. Everything before it is intact.
var errTorn = errors.New("torn or corrupt frame")

// appendFrame appends the frame for rec, stamped with unixNano, to dst.
func appendFrame(dst, rec []byte, unixNano int64) []byte {
	var h [frameHeader]byte
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(rec)))
	binary.LittleEndian.PutUint64(h[8:16], uint64(unixNano))
	c := crc32.Update(0, castagnoli, h[0:4])
	c = crc32.Update(c, castagnoli, h[8:16])
	c = crc32.Update(c, castagnoli, rec)
	binary.LittleEndian.PutUint32(h[4:8], c)
	dst = append(dst, h[:]...)
	return append(dst, rec...)
}

// frame is one decoded frame: its payload, append time and total size on disk.
type frame struct {
	rec      []byte
	unixNano int64
	size     int64
}

// readFrame decodes the frame at the start of b. It returns io.EOF when b is empty and errTorn
// when b does not start with a whole frame whose CRC matches. rec aliases b.
func readFrame(b []byte, maxRecord int) (frame, error) {
	if len(b) == 0 {
		return frame{}, io.EOF
	}
	if len(b) < frameHeader {
		return frame{}, errTorn
	}
	n := binary.LittleEndian.Uint32(b[0:4])
	if uint64(n) > uint64(maxRecord) || uint64(n) > uint64(len(b)-frameHeader) {
		return frame{}, errTorn
	}
	rec := b[frameHeader : frameHeader+int(n)]
	c := crc32.Update(0, castagnoli, b[0:4])
	c = crc32.Update(c, castagnoli, b[8:16])
	c = crc32.Update(c, castagnoli, rec)
	if c != binary.LittleEndian.Uint32(b[4:8]) {
		return frame{}, errTorn
	}
	return frame{rec: rec, unixNano: int64(binary.LittleEndian.Uint64(b[8:16])), size: frameHeader + int64(n)}, nil
}

// ReadSegment calls fn for each intact record of a segment file's contents b, in order, and
// returns the length of the valid prefix (where the next append would go). A record is passed to
// fn only if its CRC matches; scanning stops at the first frame that is torn or corrupt, so
// arbitrary bytes yield at most the records of their valid prefix. rec aliases b.
func ReadSegment(b []byte, maxRecord int, fn func(rec []byte, unixNano int64)) (valid int64, err error) {
	if len(b) < len(magic) || string(b[:len(magic)]) != magic {
		return 0, errTorn
	}
	off := int64(len(magic))
	for {
		f, err := readFrame(b[off:], maxRecord)
		if errors.Is(err, io.EOF) {
			return off, nil
		}
		if err != nil {
			return off, err
		}
		fn(f.rec, f.unixNano)
		off += f.size
	}
}
