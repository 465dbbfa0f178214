package syslog

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// header is a parsed RFC 5424 HEADER plus STRUCTURED-DATA and MSG.
type header struct {
	pri                                            int
	version, ts, host, app, procID, msgID, sd, msg string
}

// parseMessage is a strict RFC 5424 reader for the messages [Formatter] writes: six
// space-separated header fields, then STRUCTURED-DATA ("-" or SD elements, whose values may
// hold escaped '"', '\' and ']'), then MSG.
func parseMessage(t testing.TB, b []byte) header {
	t.Helper()
	s := string(b)
	if !strings.HasPrefix(s, "<") {
		t.Fatalf("no PRI: %q", s)
	}
	end := strings.IndexByte(s, '>')
	if end < 2 || end > 4 {
		t.Fatalf("bad PRI: %q", s)
	}
	pri, err := strconv.Atoi(s[1:end])
	if err != nil || pri < 0 || pri > 191 {
		t.Fatalf("bad PRI %q", s[1:end])
	}
	f := strings.SplitN(s[end+1:], " ", 7)
	if len(f) != 7 {
		t.Fatalf("header has %d fields: %q", len(f), s)
	}
	h := header{pri: pri, version: f[0], ts: f[1], host: f[2], app: f[3], procID: f[4], msgID: f[5]}
	rest := f[6]
	switch {
	case strings.HasPrefix(rest, "- "):
		h.sd, h.msg = "-", rest[2:]
	case strings.HasPrefix(rest, "["):
		i, inQuote := 0, false
		for ; i < len(rest); i++ {
			c := rest[i]
			if c == '\\' && inQuote {
				i++
				continue
			}
			if c == '"' {
				inQuote = !inQuote
			}
			if c == ']' && !inQuote && (i+1 == len(rest) || rest[i+1] == ' ') {
				break
			}
		}
		if i+1 >= len(rest) || rest[i+1] != ' ' {
			t.Fatalf("unterminated structured data: %q", rest)
		}
		h.sd, h.msg = rest[:i+1], rest[i+2:]
	default:
		t.Fatalf("bad structured data: %q", rest)
	}
	for _, v := range []struct {
		name, v string
		max     int
	}{{"hostname", h.host, MaxHostname}, {"app", h.app, MaxAppName}, {"procid", h.procID, MaxProcID}, {"msgid", h.msgID, MaxMsgID}} {
		if v.v == "" || len(v.v) > v.max {
			t.Fatalf("%s %q: empty or longer than %d", v.name, v.v, v.max)
		}
		for i := 0; i < len(v.v); i++ {
			if v.v[i] < 33 || v.v[i] > 126 {
				t.Fatalf("%s %q: byte %#x is not PRINTUSASCII", v.name, v.v, v.v[i])
			}
		}
	}
	if strings.ContainsAny(h.sd, "\x00\r\n") || !utf8.ValidString(h.sd) {
		t.Fatalf("structured data holds NUL/CR/LF or invalid UTF-8: %q", h.sd)
	}
	if h.ts != "-" {
		if _, err := time.Parse(time.RFC3339Nano, h.ts); err != nil {
			t.Fatalf("timestamp %q: %v", h.ts, err)
		}
	}
	return h
}

func mustFormatter(t testing.TB, cfg FormatterConfig) *Formatter {
	t.Helper()
	f, err := NewFormatter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// The exact bytes of one frame: a SIEM parses these positions, so any change here is a change
// of the wire format users configured their collectors for.
func TestFormatGolden(t *testing.T) {
	f := mustFormatter(t, FormatterConfig{Facility: DefaultFacility, Hostname: "gw-1.example.com", ProcID: "4242", SDID: "mcpwatch@32473"})
	cef := `CEF:0|mcpwatch|mcpwatch|0.1.0|MCP-1001|Tool call|7|rt=1737536772000 suser=alice cs1Label=tool cs1=db_query`
	msg, err := f.Append(nil, Message{
		Time:     time.Date(2025, 1, 22, 18, 6, 12, 123456789, time.FixedZone("KST", 9*3600)),
		Severity: 7, MsgID: "MCP-1001", ID: "0194b2c3-7d1e-7000-8000-000000000001", CEF: cef,
	})
	if err != nil {
		t.Fatal(err)
	}
	frame := AppendFrame(nil, msg)
	want := `<107>1 2025-01-22T09:06:12.123456Z gw-1.example.com mcpwatch 4242 MCP-1001 [mcpwatch@32473 id="0194b2c3-7d1e-7000-8000-000000000001"] ` + cef
	want = strconv.Itoa(len(want)) + " " + want
	if string(frame) != want {
		t.Fatalf("frame\n got %q\nwant %q", frame, want)
	}
}

// Facility*8 + mapped severity, and the documented band mapping.
func TestSeverityMapping(t *testing.T) {
	want := map[int]int{-5: 6, 0: 6, 3: 6, 4: 4, 6: 4, 7: 3, 8: 3, 9: 2, 10: 2, 99: 2}
	for cef, sev := range want {
		if got := Severity(cef); got != sev {
			t.Errorf("Severity(%d) = %d, want %d", cef, got, sev)
		}
	}
	f := mustFormatter(t, FormatterConfig{Facility: 20})
	msg, err := f.Append(nil, Message{Severity: 9, CEF: "CEF:0|a|b|c|d|e|9|"})
	if err != nil {
		t.Fatal(err)
	}
	if h := parseMessage(t, msg); h.pri != 20*8+2 || h.ts != "-" || h.host != "-" || h.procID != "-" || h.msgID != "-" || h.sd != "-" {
		t.Fatalf("got %+v from %q", h, msg)
	}
}

// Hostile header inputs never break the header: MSGID is cut to 32 PRINTUSASCII bytes, the SD
// value escapes its specials and loses control characters.
func TestFormatSanitizesHeader(t *testing.T) {
	f := mustFormatter(t, FormatterConfig{Hostname: "h", SDID: "x@32473"})
	msg, err := f.Append(nil, Message{
		Time: time.Unix(0, 0), MsgID: "MCP 1001\n서명-" + strings.Repeat("A", 40),
		ID: "a\"b\\c]d\ne\x00f\xff", CEF: "CEF:0|x|y|z|s|n|1|k=v",
	})
	if err != nil {
		t.Fatal(err)
	}
	h := parseMessage(t, msg)
	if want := "MCP_1001_______-" + strings.Repeat("A", 16); h.msgID != want {
		t.Errorf("msgid %q, want %q", h.msgID, want)
	}
	if want := `[x@32473 id="a\"b\\c\]d` + "\ufffde\ufffdf\ufffd" + `"]`; h.sd != want {
		t.Errorf("sd %q, want %q", h.sd, want)
	}
	if h.msg != "CEF:0|x|y|z|s|n|1|k=v" {
		t.Errorf("msg %q", h.msg)
	}
}

// A CEF line that a renderer cannot have produced is refused, not altered: altering would make
// the SIEM's copy differ from the stored one; refusing dead-letters the record with the reason.
func TestFormatRejects(t *testing.T) {
	f := mustFormatter(t, FormatterConfig{MaxMessage: 600})
	for name, tc := range map[string]struct {
		cef  string
		want error
	}{
		"empty":     {"", ErrInvalidMessage},
		"LF":        {"CEF:0|a|b|c|d|e|1|msg=x\ny", ErrInvalidMessage},
		"CR":        {"CEF:0|a|b|c|d|e|1|msg=x\ry", ErrInvalidMessage},
		"NUL":       {"CEF:0|a|b|c|d|e|1|msg=x\x00y", ErrInvalidMessage},
		"ESC":       {"CEF:0|a|b|c|d|e|1|msg=\x1b[31m", ErrInvalidMessage},
		"DEL":       {"CEF:0|a|b|c|d|e|1|msg=\x7f", ErrInvalidMessage},
		"not UTF-8": {"CEF:0|a|b|c|d|e|1|msg=\xc3\x28", ErrInvalidMessage},
		"too large": {"CEF:0|a|b|c|d|e|1|msg=" + strings.Repeat("x", 600), ErrTooLarge},
	} {
		dst := []byte("keep")
		out, err := f.Append(dst, Message{CEF: tc.cef})
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", name, err, tc.want)
		}
		if string(out) != "keep" {
			t.Errorf("%s: dst changed to %q", name, out)
		}
	}
	// TAB is legal in CEF values and passes unchanged.
	if _, err := f.Append(nil, Message{CEF: "CEF:0|a|b|c|d|e|1|msg=a\tb"}); err != nil {
		t.Errorf("TAB: %v", err)
	}
}

func TestNewFormatterValidation(t *testing.T) {
	for name, cfg := range map[string]FormatterConfig{
		"facility":       {Facility: 24},
		"hostname space": {Hostname: "my host"},
		"hostname long":  {Hostname: strings.Repeat("h", 256)},
		"hostname utf8":  {Hostname: "호스트"},
		"sdid no pen":    {SDID: "mcpwatch"},
		"sdid quote":     {SDID: `a"b@1`},
		"max too small":  {MaxMessage: 100},
	} {
		if _, err := NewFormatter(cfg); err == nil {
			t.Errorf("%s: accepted %+v", name, cfg)
		}
	}
	if _, err := ParseFacility("local4"); err != nil {
		t.Error(err)
	}
	if f, err := ParseFacility("23"); err != nil || f != 23 {
		t.Errorf("ParseFacility(23) = %d, %v", f, err)
	}
	if _, err := ParseFacility("local8"); err == nil {
		t.Error("local8 accepted")
	}
}

func TestBOM(t *testing.T) {
	f := mustFormatter(t, FormatterConfig{BOM: true})
	msg, err := f.Append(nil, Message{CEF: "CEF:0|a|b|c|d|e|1|"})
	if err != nil {
		t.Fatal(err)
	}
	if h := parseMessage(t, msg); h.msg != "\ufeffCEF:0|a|b|c|d|e|1|" {
		t.Fatalf("msg %q", h.msg)
	}
}

func TestReadFrame(t *testing.T) {
	two := AppendFrame(AppendFrame(nil, []byte("<13>1 - - - - - - a b")), []byte("x"))
	m1, rest, err := ReadFrame(two)
	if err != nil || string(m1) != "<13>1 - - - - - - a b" {
		t.Fatalf("first: %q %v", m1, err)
	}
	m2, rest, err := ReadFrame(rest)
	if err != nil || string(m2) != "x" || len(rest) != 0 {
		t.Fatalf("second: %q %q %v", m2, rest, err)
	}
	for _, bad := range []string{"", " x", "5 abc", "05 abcde", "a5 abcde", "12345678901 x", "3abc"} {
		if _, _, err := ReadFrame([]byte(bad)); !errors.Is(err, ErrFrame) {
			t.Errorf("ReadFrame(%q): %v", bad, err)
		}
	}
}

// FuzzFormat: whatever the event carries, an accepted message frames so that the length prefix
// is exactly the message's octets, the header fields are RFC 5424-legal (no space, NUL or
// newline can leak into them) and MSG is the CEF line byte for byte; a refused one leaves dst
// alone.
func FuzzFormat(f *testing.F) {
	f.Add("MCP-1001", "0194b2c3-7d1e-7000-8000-000000000001", "CEF:0|mcpwatch|mcpwatch|0.1|MCP-1001|Tool call|1|suser=alice", 1, int64(1737536772123456789), false)
	f.Add("", "", `CEF:0|a\|b|c|d|e|f|10|msg=x\=y\\z\n 서울`, 10, int64(0), true)
	f.Add("MCP 1\n", "]\"\\\n", "CEF:0|x|y|z|s|n|3|k=\tv", -3, int64(-62135596800000000), false)
	f.Add(strings.Repeat("é", 40), "\x00", "CEF\r\n", 5, int64(253402300800000000), true)
	fm := mustFormatter(f, FormatterConfig{Facility: 13, Hostname: "gw", ProcID: "1", SDID: "mcpwatch@32473", MaxMessage: 4096})
	fb := mustFormatter(f, FormatterConfig{Facility: 23, BOM: true, MaxMessage: 4096})
	f.Fuzz(func(t *testing.T, msgID, id, cef string, sev int, nanos int64, bom bool) {
		fmt := fm
		if bom {
			fmt = fb
		}
		m := Message{Time: time.Unix(0, nanos), Severity: sev, MsgID: msgID, ID: id, CEF: cef}
		prefix := []byte("prev")
		out, err := fmt.Append(prefix, m)
		if err != nil {
			if !errors.Is(err, ErrInvalidMessage) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			if string(out) != "prev" {
				t.Fatalf("refused message changed dst: %q", out)
			}
			return
		}
		msg := out[len(prefix):]
		if len(msg) > 4096 {
			t.Fatalf("message of %d octets passed a 4096 limit", len(msg))
		}
		frame := AppendFrame(nil, msg)
		got, rest, err := ReadFrame(frame)
		if err != nil || len(rest) != 0 || !bytes.Equal(got, msg) {
			t.Fatalf("frame does not read back: %q rest %q err %v", got, rest, err)
		}
		h := parseMessage(t, msg)
		if h.version != "1" || h.app != AppName {
			t.Fatalf("version/app: %+v", h)
		}
		if want := fmt.pri + Severity(sev); h.pri != want {
			t.Fatalf("pri %d, want %d", h.pri, want)
		}
		wantMsg := cef
		if bom {
			wantMsg = "\ufeff" + cef
		}
		if h.msg != wantMsg {
			t.Fatalf("msg %q, want %q", h.msg, wantMsg)
		}
		headerLen := len(msg) - len(h.msg)
		if bytes.ContainsAny(msg[:headerLen], "\x00\r\n") {
			t.Fatalf("header holds NUL or a newline: %q", msg[:headerLen])
		}
	})
}
