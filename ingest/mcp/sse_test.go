package mcp

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

type parsed struct {
	Name, ID, Data string
	Overflow       bool
}

// parseAll feeds stream to a parser in chunks of the given sizes (cycled) and collects events. It
// also checks the contract callers rely on: an event is returned exactly when the byte consumed
// last is a line terminator.
func parseAll(t testing.TB, stream []byte, max int, chunks ...int) []parsed {
	t.Helper()
	p := newSSEParser(max)
	var out []parsed
	for i, c := 0, 0; i < len(stream); c++ {
		n := len(stream) - i
		if len(chunks) > 0 {
			n = min(n, max1(chunks[c%len(chunks)]))
		}
		chunk := stream[i : i+n]
		for len(chunk) > 0 {
			k, ev, lineEnd := p.next(chunk)
			if k <= 0 || k > len(chunk) {
				t.Fatalf("next consumed %d of %d bytes", k, len(chunk))
			}
			if last := chunk[k-1]; (ev != nil || lineEnd) && last != '\n' && last != '\r' {
				t.Fatalf("line end reported on byte %q", last)
			}
			if ev != nil {
				out = append(out, parsed{ev.name, ev.id, string(ev.data), ev.overflow})
			}
			chunk = chunk[k:]
		}
		i += n
	}
	return out
}

func max1(n int) int { return max(n, 1) }

// The parser sees what the client's parser sees: if they disagreed, the audit would describe
// messages other than those the client acted on.
func TestSSEParse(t *testing.T) {
	cases := []struct {
		name   string
		stream string
		want   []parsed
	}{
		{"one event", "event: message\nid: 1\ndata: {\"a\":1}\n\n", []parsed{{"message", "1", `{"a":1}`, false}}},
		{"multi-line data", "data: a\ndata:b\ndata:  c\n\n", []parsed{{"", "", "a\nb\n c", false}}},
		{"CRLF", "data: x\r\n\r\ndata: y\r\n\r\n", []parsed{{"", "", "x", false}, {"", "", "y", false}}},
		{"CR only", "data: x\r\rdata: y\r\r", []parsed{{"", "", "x", false}, {"", "", "y", false}}},
		{"comments and keep-alives", ": ping\n\n:\n\ndata: z\n\n", []parsed{{"", "", "z", false}}},
		{"priming event has no data", "id: 0\ndata:\n\nid: 1\ndata: m\n\n", []parsed{{"", "1", "m", false}}},
		{"id persists", "id: 7\ndata: a\n\ndata: b\n\n", []parsed{{"", "7", "a", false}, {"", "7", "b", false}}},
		{"id with NUL ignored", "id: 1\n\nid: a\x00b\ndata: x\n\n", []parsed{{"", "1", "x", false}}},
		{"field without colon", "data\n\n", nil},
		{"unknown fields", "retry: 10\nfoo: bar\ndata: d\n\n", []parsed{{"", "", "d", false}}},
		{"unterminated last event", "data: a\n\ndata: b\n", []parsed{{"", "", "a", false}}},
		{"BOM", "\xEF\xBB\xBFdata: a\n\n", []parsed{{"", "", "a", false}}},
		{"event name resets", "event: other\ndata: a\n\ndata: b\n\n", []parsed{{"other", "", "a", false}, {"", "", "b", false}}},
		{"oversized data", "data: " + strings.Repeat("x", 40) + "\n\ndata: ok\n\n", []parsed{{"", "", "", true}, {"", "", "ok", false}}},
		{"oversized across lines", "data: " + strings.Repeat("x", 20) + "\ndata: " + strings.Repeat("y", 20) + "\n\n", []parsed{{"", "", "", true}}},
		{"oversized comment is harmless", ":" + strings.Repeat("c", 100) + "\ndata: ok\n\n", []parsed{{"", "", "ok", false}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunking := range [][]int{nil, {1}, {2, 3}, {7}} {
				got := parseAll(t, []byte(tc.stream), 32, chunking...)
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("chunks %v:\n got %+v\nwant %+v", chunking, got, tc.want)
				}
			}
		})
	}
}

// FuzzSSE: however the network splits a stream, the parser must see the same events, and it must
// never panic or report an event on a byte that is not a line terminator.
func FuzzSSE(f *testing.F) {
	f.Add([]byte("event: message\nid: 1\ndata: {\"a\":1}\n\n"), uint8(1), uint8(3))
	f.Add([]byte("data: x\r\n\r\ndata: y\r\rdata\n\n:c\n"), uint8(2), uint8(1))
	f.Add([]byte("\xEF\xBB\xBFdata: a\n\n"), uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, stream []byte, a, b uint8) {
		whole := parseAll(t, stream, 64)
		split := parseAll(t, stream, 64, int(a), int(b))
		if !reflect.DeepEqual(whole, split) {
			t.Fatalf("chunking changed the events:\nwhole %+v\nsplit %+v", whole, split)
		}
	})
}

func BenchmarkSSE(b *testing.B) {
	var stream bytes.Buffer
	for i := range 100 {
		fmt.Fprintf(&stream, "event: message\nid: %d\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":%d}}\n\n", i, i)
	}
	b.SetBytes(int64(stream.Len()))
	b.ReportAllocs()
	for b.Loop() {
		parseAll(b, stream.Bytes(), 1<<20, 4096)
	}
}
