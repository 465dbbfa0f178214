package mcp

import "bytes"

// sseEvent is one dispatched server-sent event.
type sseEvent struct {
	name     string // "event:" field; empty means "message"
	id       string // last event id in force when dispatched
	data     []byte // "data:" lines joined by "\n"; valid until the parser is fed again
	overflow bool   // the event's data was larger than the parser's limit and was dropped
}

// sseParser is an incremental text/event-stream parser following the WHATWG rules: lines end in
// CRLF, LF or CR; "data:" lines accumulate; a blank line dispatches; comments and unknown fields
// are ignored; a leading byte-order mark is dropped. It is fed chunks as they arrive and holds at
// most one event (bounded by max) in memory.
type sseParser struct {
	max        int
	line       []byte
	lineLong   bool // the current line passed max; only its first max bytes are kept
	data       []byte
	hasData    bool
	name       string
	lastID     string
	overflow   bool
	skipLF     bool // the last terminator was CR: an LF right after it belongs to it
	bomChecked bool
}

func newSSEParser(max int) *sseParser { return &sseParser{max: max} }

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// next consumes b up to and including the next line terminator, or all of b when it holds none,
// and returns the count consumed, whether a line ended, and the event when that line was the blank
// one that dispatches it. The dispatching terminator is then b[n-1], so a caller can withhold it
// and with it the event: a client acts on an event only once it sees that byte. Events without
// data (keep-alives, priming events that only set an id) are not returned.
func (p *sseParser) next(b []byte) (n int, ev *sseEvent, lineEnd bool) {
	i := 0
	if p.skipLF && len(b) > 0 {
		p.skipLF = false
		if b[0] == '\n' {
			i = 1
		}
	}
	j := bytes.IndexAny(b[i:], "\r\n")
	if j < 0 {
		p.appendLine(b[i:])
		return len(b), nil, false
	}
	p.appendLine(b[i : i+j])
	t := i + j
	p.skipLF = b[t] == '\r'
	return t + 1, p.endLine(), true
}

// inEvent reports whether data lines of an undispatched event have been read.
func (p *sseParser) inEvent() bool { return p.hasData }

func (p *sseParser) appendLine(b []byte) {
	if room := p.max - len(p.line); len(b) > room {
		b = b[:max(room, 0)]
		p.lineLong = true
	}
	p.line = append(p.line, b...)
}

// endLine interprets the line just completed and dispatches on a blank one.
func (p *sseParser) endLine() *sseEvent {
	line, long := p.line, p.lineLong
	p.line, p.lineLong = p.line[:0], false
	if !p.bomChecked {
		p.bomChecked = true
		line = bytes.TrimPrefix(line, utf8BOM)
	}
	if len(line) == 0 && !long {
		return p.dispatch()
	}
	if line[0] == ':' {
		return nil
	}
	name, value := line, []byte(nil)
	if k := bytes.IndexByte(line, ':'); k >= 0 {
		name, value = line[:k], line[k+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(name) {
	case "data":
		if p.hasData {
			p.data = append(p.data, '\n')
		}
		p.hasData = true
		if long || len(p.data)+len(value) > p.max {
			p.overflow = true
		}
		if p.overflow {
			p.data = p.data[:0]
		} else {
			p.data = append(p.data, value...)
		}
	case "event":
		if !long {
			p.name = string(value)
		}
	case "id":
		if !long && bytes.IndexByte(value, 0) < 0 {
			p.lastID = string(value)
		}
	}
	return nil
}

func (p *sseParser) dispatch() *sseEvent {
	var ev *sseEvent
	if p.hasData && (len(p.data) > 0 || p.overflow) {
		ev = &sseEvent{name: p.name, id: p.lastID, overflow: p.overflow}
		if !p.overflow {
			ev.data = p.data
		}
	}
	p.data = p.data[:0]
	p.hasData, p.name, p.overflow = false, "", false
	return ev
}
