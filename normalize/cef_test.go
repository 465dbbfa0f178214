package normalize

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// parsedCEF is a CEF line taken apart by parseCEF.
type parsedCEF struct {
	Header [7]string // version, vendor, product, device version, signature, name, severity
	Ext    map[string]string
	Keys   []string // extension keys in order
}

// parseCEF is a strict CEF parser written from the specification, independent of the formatter:
// the header is seven fields separated by unescaped pipes (`\|` and `\\` unescaped); the
// extension is key=value pairs where every unescaped `=` ends a key, a key is the run of
// [A-Za-z0-9_] before it, and a value runs up to the space before the next key. It rejects what
// the specification forbids: unknown escapes, raw newlines, a duplicate key.
func parseCEF(line string) (parsedCEF, error) {
	var p parsedCEF
	if !strings.HasPrefix(line, "CEF:") {
		return p, errors.New("no CEF: prefix")
	}
	if strings.ContainsAny(line, "\r\n") {
		return p, errors.New("raw newline in line")
	}
	rest := line[len("CEF:"):]
	for i := range 7 {
		var b strings.Builder
		j := 0
		for ; j < len(rest); j++ {
			c := rest[j]
			if c == '\\' {
				if j+1 >= len(rest) || (rest[j+1] != '\\' && rest[j+1] != '|') {
					return p, fmt.Errorf("header field %d: bad escape at %d", i, j)
				}
				b.WriteByte(rest[j+1])
				j++
				continue
			}
			if c == '|' {
				break
			}
			b.WriteByte(c)
		}
		if j >= len(rest) {
			return p, fmt.Errorf("header has %d fields, want 7", i+1)
		}
		p.Header[i] = b.String()
		rest = rest[j+1:]
	}
	p.Ext = map[string]string{}
	// Positions of unescaped '=' in the extension.
	var eqs []int
	for j := 0; j < len(rest); j++ {
		switch rest[j] {
		case '\\':
			j++
		case '=':
			eqs = append(eqs, j)
		}
	}
	isKey := func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
	}
	keyStart := func(eq int) int {
		k := eq
		for k > 0 && isKey(rest[k-1]) {
			k--
		}
		return k
	}
	for n, eq := range eqs {
		ks := keyStart(eq)
		if ks == eq {
			return p, fmt.Errorf("empty key before '=' at %d", eq)
		}
		if n == 0 && ks != 0 {
			return p, fmt.Errorf("text before the first key: %q", rest[:ks])
		}
		if n > 0 && rest[ks-1] != ' ' {
			return p, fmt.Errorf("key at %d not preceded by a space", ks)
		}
		end := len(rest)
		if n+1 < len(eqs) {
			end = keyStart(eqs[n+1]) - 1 // the separating space
		}
		if end < eq+1 {
			return p, fmt.Errorf("key %q has no value", rest[ks:eq])
		}
		v, err := unescapeExt(rest[eq+1 : end])
		if err != nil {
			return p, fmt.Errorf("value of %s: %w", rest[ks:eq], err)
		}
		k := rest[ks:eq]
		if _, dup := p.Ext[k]; dup {
			return p, fmt.Errorf("duplicate key %s", k)
		}
		p.Ext[k] = v
		p.Keys = append(p.Keys, k)
	}
	if len(eqs) == 0 && rest != "" {
		return p, fmt.Errorf("extension without keys: %q", rest)
	}
	return p, nil
}

func unescapeExt(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return "", errors.New("dangling backslash")
		}
		i++
		switch s[i] {
		case '\\', '=':
			b.WriteByte(s[i])
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		default:
			return "", fmt.Errorf("unknown escape \\%c", s[i])
		}
	}
	return b.String(), nil
}

// sanitized is what a value becomes in CEF when it had characters CEF cannot carry.
func sanitized(s string, header bool) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size // each invalid byte is one U+FFFD
		switch {
		case header && (r == '\n' || r == '\r'):
			b.WriteByte(' ')
		case r == '\n', r == '\r', r == '\t':
			b.WriteRune(r)
		case r < 0x20, r >= 0x7f && r < 0xa0, r == '\u2028', r == '\u2029':
			b.WriteRune('\uFFFD')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// hostile are values an attacker controls (tool names, resource URIs, subjects) and tries to use
// to break the line: forge fields, inject extensions, split the record, hide in encodings.
var hostile = []string{
	"plain",
	"a|b||c|",
	`back\slash\`,
	`\\`,
	`\|`,
	`\=`,
	"x=y",
	"suser=root cs1=evil",
	"= leading equals",
	"trailing equals=",
	"trailing space ",
	" leading space",
	"two  spaces",
	"line1\nline2",
	"cr\rlf\n",
	"\r\n",
	"tab\tinside",
	"CEF:0|forged|header|1|x|y|10|act=x",
	"ünïcödé 데이터 📊",
	"bad utf8 \xff\xfe end",
	"\x00nul\x1besc[31m\x7fdel\u0085nel",
	"line\u2028sep",
	`=\|=|\=`,
	"k=v\\",
	"\\n not a newline",
	strings.Repeat("=|\\\n", 50),
}

// Every hostile value must survive the header unchanged (after sanitizing), keep the header at
// seven fields, and never produce a line the strict parser rejects. If this fails, an attacker
// can forge CEF fields in a SIEM.
func TestCEFHeaderEscaping(t *testing.T) {
	for _, v := range hostile {
		line := NewCEF(v, "p|roduct", `ver\sion`, v, v, 5).Ext("act", "x").String()
		p, err := parseCEF(line)
		if err != nil {
			t.Fatalf("%q: unparsable line %q: %v", v, line, err)
		}
		want := sanitized(v, true)
		if p.Header[0] != "0" || p.Header[1] != want || p.Header[2] != "p|roduct" || p.Header[3] != `ver\sion` ||
			p.Header[4] != want || p.Header[5] != want || p.Header[6] != "5" {
			t.Fatalf("%q: header %q, want vendor/signature/name %q", v, p.Header, want)
		}
		if p.Ext["act"] != "x" || len(p.Ext) != 1 {
			t.Fatalf("%q: header value leaked into extensions: %v", v, p.Ext)
		}
	}
}

// Every hostile value must round-trip through an extension value, next to other fields, without
// creating or changing any other key.
func TestCEFExtensionRoundTrip(t *testing.T) {
	for _, v := range hostile {
		for _, pos := range []string{"first", "middle", "last"} {
			c := NewCEF("v", "p", "1", "MCP-1", "n", 1)
			if pos != "first" {
				c.Ext("rt", "1")
			}
			c.Ext("suser", v)
			if pos != "last" {
				c.Ext("act", "tools/call")
			}
			line := c.String()
			p, err := parseCEF(line)
			if err != nil {
				t.Fatalf("%q (%s): unparsable line %q: %v", v, pos, line, err)
			}
			if got, want := p.Ext["suser"], sanitized(v, false); got != want {
				t.Fatalf("%q (%s): suser=%q, want %q; line %q", v, pos, got, want, line)
			}
			want := map[string]string{"suser": sanitized(v, false)}
			if pos != "first" {
				want["rt"] = "1"
			}
			if pos != "last" {
				want["act"] = "tools/call"
			}
			if !maps.Equal(p.Ext, want) {
				t.Fatalf("%q (%s): extensions %v, want %v", v, pos, p.Ext, want)
			}
		}
	}
}

// The exact bytes matter to SIEM parsers that are less forgiving than ours.
func TestCEFExactEscapes(t *testing.T) {
	cases := []struct {
		name string
		got  string
		want string
	}{
		{"header pipe and backslash", NewCEF(`a|b\c`, "p", "1", "S", "n", 3).String(), `CEF:0|a\|b\\c|p|1|S|n|3|`},
		{"header newline", NewCEF("a\nb\rc", "p", "1", "S", "n", 3).String(), `CEF:0|a b c|p|1|S|n|3|`},
		{"header equals kept", NewCEF("a=b", "p", "1", "S", "n", 3).String(), `CEF:0|a=b|p|1|S|n|3|`},
		{"ext equals and backslash", NewCEF("v", "p", "1", "S", "n", 3).Ext("msg", `a=b\c`).String(), `CEF:0|v|p|1|S|n|3|msg=a\=b\\c`},
		{"ext pipe not escaped", NewCEF("v", "p", "1", "S", "n", 3).Ext("msg", "a|b").String(), `CEF:0|v|p|1|S|n|3|msg=a|b`},
		{"ext newlines", NewCEF("v", "p", "1", "S", "n", 3).Ext("msg", "a\r\nb").String(), `CEF:0|v|p|1|S|n|3|msg=a\r\nb`},
		{"ext control chars", NewCEF("v", "p", "1", "S", "n", 3).Ext("msg", "a\x1b[2Jb\x00").String(), "CEF:0|v|p|1|S|n|3|msg=a\uFFFD[2Jb\uFFFD"},
		{"empty omitted", NewCEF("v", "p", "1", "S", "n", 3).Ext("a", "").Ext("b", "x").Int("c", 0).String(), `CEF:0|v|p|1|S|n|3|b=x`},
		{"labels only with value", NewCEF("v", "p", "1", "S", "n", 3).Labeled("cs1", "tool", "").Labeled("cs2", "s", "x").LabeledInt("cn1", "c", 0).LabeledInt("cn2", "d", -32602).String(),
			`CEF:0|v|p|1|S|n|3|cs2Label=s cs2=x cn2Label=d cn2=-32602`},
		{"severity clamped high", NewCEF("v", "p", "1", "S", "n", 99).String(), `CEF:0|v|p|1|S|n|10|`},
		{"severity clamped low", NewCEF("v", "p", "1", "S", "n", -1).String(), `CEF:0|v|p|1|S|n|0|`},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, c.got, c.want)
		}
	}
}

// FuzzCEF: for any header and extension value, the line parses, keeps exactly its fields, and
// the values come back sanitized but otherwise unchanged.
func FuzzCEF(f *testing.F) {
	for _, v := range hostile {
		f.Add(v, v)
	}
	f.Fuzz(func(t *testing.T, h, v string) {
		line := NewCEF("mcpwatch", h, "1", "MCP-1001", h, 4).Ext("suser", v).Ext("act", v).String()
		if err := checkCEFSpec(line); err != nil {
			t.Fatalf("%v: %q", err, line)
		}
		p, err := parseCEF(line)
		if err != nil {
			t.Fatalf("unparsable %q: %v", line, err)
		}
		if p.Header[2] != sanitized(h, true) || p.Header[5] != sanitized(h, true) {
			t.Fatalf("header changed: %q", p.Header)
		}
		if v == "" {
			if len(p.Ext) != 0 {
				t.Fatalf("empty value written: %v", p.Ext)
			}
			return
		}
		if want := []string{"suser", "act"}; !slices.Equal(p.Keys, want) || p.Ext["suser"] != sanitized(v, false) || p.Ext["act"] != sanitized(v, false) {
			t.Fatalf("extension changed: %v", p.Ext)
		}
	})
}

// The parser itself must reject what the formatter must never produce, or the round-trip tests
// above would prove nothing.
func TestParseCEFRejects(t *testing.T) {
	for _, bad := range []string{
		"LEEF:1|a|b|c|d|",
		"CEF:0|a|b|c|d|e|1",             // six separators
		"CEF:0|a|b|c|d|e|1|x=a\nb",      // raw newline
		`CEF:0|a|b\x|c|d|e|1|`,          // unknown header escape
		`CEF:0|a|b|c|d|e|1|x=a\tb`,      // unknown extension escape
		`CEF:0|a|b|c|d|e|1|x=a y=b x=c`, // duplicate key
		`CEF:0|a|b|c|d|e|1|junk x=a`,    // text before the first key
		`CEF:0|a|b|c|d|e|1|x=a\`,        // dangling backslash
		`CEF:0|a|b|c|d|e|1|x=a =b`,      // empty key
	} {
		if _, err := parseCEF(bad); err == nil {
			t.Errorf("parser accepted %q", bad)
		}
	}
}

// checkCEFSpec is a spec-level checker of one CEF line, separate from parseCEF's field logic:
// one line of valid UTF-8 with no control characters but TAB; a header of exactly seven
// unescaped pipes after "CEF:"; in the extension, every `=` that is not a key separator and
// every `\` escaped.
func checkCEFSpec(line string) error {
	if !utf8.ValidString(line) {
		return errors.New("invalid UTF-8")
	}
	for _, r := range line {
		if r < 0x20 && r != '\t' || r >= 0x7f && r < 0xa0 || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("control character %U", r)
		}
	}
	pipes, i := 0, len("CEF:")
	for ; i < len(line) && pipes < 7; i++ {
		switch line[i] {
		case '\\':
			i++
		case '|':
			pipes++
		}
	}
	if pipes != 7 {
		return fmt.Errorf("header has %d unescaped pipes, want 7", pipes)
	}
	ext := line[i:]
	for j := 0; j < len(ext); j++ {
		switch ext[j] {
		case '\\':
			if j+1 >= len(ext) || !strings.ContainsRune(`\=nr`, rune(ext[j+1])) {
				return fmt.Errorf("bad escape at %d", j)
			}
			j++
		case '=':
			// An unescaped '=' must end a key: [A-Za-z0-9]+ at the start or after a space.
			k := j
			for k > 0 && (ext[k-1] >= 'a' && ext[k-1] <= 'z' || ext[k-1] >= 'A' && ext[k-1] <= 'Z' || ext[k-1] >= '0' && ext[k-1] <= '9') {
				k--
			}
			if k == j || (k > 0 && ext[k-1] != ' ') {
				return fmt.Errorf("unescaped '=' in a value at %d", j)
			}
		}
	}
	return nil
}

// FuzzNormalize fills every string field an attacker can reach with fuzzed text and checks all
// three renderings: the CEF line passes the spec-level checker and the strict parser with the
// values intact, the OCSF object is valid UTF-8 JSON, and the audit line stays one line.
func FuzzNormalize(f *testing.F) {
	for _, v := range hostile {
		f.Add(v, v, v, "tools/call")
	}
	f.Add("alice", "db_query", "file:///x", "resources/read")
	f.Fuzz(func(t *testing.T, sub, tool, uri, method string) {
		e := toolCall()
		e.Principal.Subject, e.MCP.Tool, e.MCP.ResourceURI, e.MCP.Method = sub, tool, uri, method
		e.Outcome.Reason, e.Target.Server = uri, tool
		n, err := Normalize(e, now)
		if err != nil {
			t.Fatal(err)
		}
		line := n.Normalized.CEF
		if err := checkCEFSpec(line); err != nil {
			t.Fatalf("%v: %q", err, line)
		}
		p, err := parseCEF(line)
		if err != nil {
			t.Fatalf("unparsable %q: %v", line, err)
		}
		for k, want := range map[string]string{"suser": sub, "cs1": tool, "request": uri, "act": method, "reason": uri} {
			if got := p.Ext[k]; got != sanitized(want, false) {
				t.Fatalf("%s = %q, want %q", k, got, sanitized(want, false))
			}
		}
		if !utf8.Valid(n.Normalized.OCSF) || !json.Valid(n.Normalized.OCSF) {
			t.Fatalf("OCSF not valid UTF-8 JSON: %q", n.Normalized.OCSF)
		}
		if l := Line(n); strings.ContainsAny(l, "\r\n") || !utf8.ValidString(l) {
			t.Fatalf("audit line %q", l)
		}
	})
}

// The checker must refuse what the renderer must never produce.
func TestCheckCEFSpecRejects(t *testing.T) {
	for _, bad := range []string{
		"CEF:0|a|b|c|d|e|1",           // six pipes
		"CEF:0|a|b|c|d|e|1|x=a\nb",    // raw newline
		"CEF:0|a|b|c|d|e|1|x=a=b",     // unescaped '=' in a value
		"CEF:0|a|b|c|d|e|1|x=a \\t",   // unknown escape
		"CEF:0|a|b|c|d|e|1|x=\x1b[2J", // terminal escape
		"CEF:0|a|b|c|d|e|1|x=\xff",    // invalid UTF-8
	} {
		if checkCEFSpec(bad) == nil {
			t.Errorf("checker accepted %q", bad)
		}
	}
	if err := checkCEFSpec(`CEF:0|a\|b|c|d|e|f|1|x=a\=b y=\\ z=c|d`); err != nil {
		t.Errorf("checker refused a valid line: %v", err)
	}
}

// writeEscapedByRune is the plain rune-by-rune form of writeEscaped, kept as the reference its
// fast path (copying runs of printable ASCII) must agree with.
func writeEscapedByRune(b *strings.Builder, s string, header bool) {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '|' && header:
			b.WriteString(`\|`)
		case r == '=' && !header:
			b.WriteString(`\=`)
		case (r == '\n' || r == '\r') && header:
			b.WriteByte(' ')
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteByte('\t')
		case r == utf8.RuneError && size <= 1, r < 0x20, r >= 0x7f && r < 0xa0, r == '\u2028', r == '\u2029':
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteRune(r)
		}
	}
}

func FuzzWriteEscapedMatchesReference(f *testing.F) {
	for _, s := range []string{"", "plain", `a|b=c\d`, "x\ny\rz\t", "한국어 🙂", "\x00\x7f\u0085\u2028", "\xff\xfe", "end\\"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, header bool) {
		var got, want strings.Builder
		writeEscaped(&got, s, header)
		writeEscapedByRune(&want, s, header)
		if got.String() != want.String() {
			t.Fatalf("writeEscaped(%q, %v) = %q, reference %q", s, header, got.String(), want.String())
		}
	})
}
