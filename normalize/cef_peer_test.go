package normalize

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// peerHostile extends [hostile] with values aimed at other parsers' habits: quotes they strip,
// Unicode spaces they trim, and sizes they truncate.
var peerHostile = append(slices.Clone(hostile),
	"",
	`"quoted"`,
	`"`,
	"\u00a0nbsp\u00a0",
	"\u3000전각 공백\u3000",
	"한국어 사용자 | 도구=조회 \\ 끝",
	"tab\tat end\t",
	"| leading pipe",
	"trailing pipe |",
	" = ",
	strings.Repeat("가=|\\\r\n", 2000),
	strings.Repeat("x", 64<<10),
)

// vrlHeader is what VRL's parse_cef returns for a header field that mcpwatch wrote from v: the
// sanitized value, with surrounding whitespace trimmed and surrounding double quotes removed
// (both documented VRL behaviour, not CEF rules).
func vrlHeader(v string) string {
	return unquote(strings.TrimSpace(sanitized(v, true)))
}

// vrlExt is what VRL returns for an extension value written from v. On top of the sanitizing,
// VRL (1) decodes `\r` as LF: the CEF specification gives `\r` and `\n` the same meaning, a line
// break; (2) takes trailing spaces and pipes of a value as part of the separator before the next
// key (spaces only, for the last value); (3) removes surrounding double quotes.
func vrlExt(v string, last bool) string {
	s := strings.ReplaceAll(sanitized(v, false), "\r", "\n")
	if last {
		s = strings.TrimRight(s, " ")
	} else {
		s = strings.TrimRight(s, " |")
	}
	return unquote(s)
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

type vrlResult struct {
	OK    map[string]string `json:"ok"`
	Error string            `json:"error"`
}

var vrlHeaderKeys = [...]string{"cefVersion", "deviceVendor", "deviceProduct", "deviceVersion", "deviceEventClassId", "name", "severity"}

// TestCEFIndependentParser renders hostile values into every header field and into extension
// values (first, middle and last position) and has Vector's VRL parse_cef, a maintained CEF
// parser that shares no code with mcpwatch, take the lines apart. Every header field and every
// extension value must come back as written, except for the documented VRL habits in vrlHeader
// and vrlExt, and no value may create or remove a key. If this fails, a SIEM reading mcpwatch's
// CEF can be fed forged fields or loses evidence.
func TestCEFIndependentParser(t *testing.T) {
	var lines []any
	for _, v := range peerHostile {
		lines = append(lines, NewCEF(v, v, v, v, v, 7).Ext("suser", v).Ext("act", "tools/call").Ext("msg", v).String())
	}
	res := runPeer[vrlResult](t, "cef_parse.py", nil, lines)
	exact := 0
	for i, v := range peerHostile {
		r := res[i]
		if r.Error != "" {
			t.Errorf("%.60q: VRL rejected %.200q: %s", v, lines[i], r.Error)
			continue
		}
		want := map[string]string{"cefVersion": "0", "severity": "7", "act": "tools/call"}
		for _, k := range vrlHeaderKeys[1:6] {
			want[k] = vrlHeader(v)
		}
		if v != "" {
			want["suser"], want["msg"] = vrlExt(v, false), vrlExt(v, true)
		}
		if !maps.Equal(r.OK, want) {
			for k := range mergeKeys(r.OK, want) {
				if r.OK[k] != want[k] {
					t.Errorf("%.60q: %s = %.80q, want %.80q", v, k, r.OK[k], want[k])
				}
			}
			continue
		}
		if vrlHeader(v) == sanitized(v, true) && vrlExt(v, false) == sanitized(v, false) && vrlExt(v, true) == sanitized(v, false) {
			exact++
		}
	}
	// Most hostile values (pipes, equals signs, backslashes, LF, non-ASCII, forged headers) meet
	// none of VRL's habits, so they must have come back byte for byte.
	if exact < 20 {
		t.Errorf("only %d of %d values round-tripped exactly", exact, len(peerHostile))
	}
	t.Logf("%d of %d hostile values round-tripped byte for byte; the rest as documented VRL normalizations", exact, len(peerHostile))
}

// TestCEFIndependentParserEvents: whole normalized events with hostile values in every string
// field must parse the same with VRL as with our strict parser, key for key.
func TestCEFIndependentParserEvents(t *testing.T) {
	var lines []any
	for _, v := range peerHostile {
		if v == "" {
			continue
		}
		e := toolCall()
		e.Observer, e.Principal.Subject, e.Principal.TokenID = v, v, v
		e.MCP.Tool, e.MCP.ResourceURI, e.MCP.Prompt, e.MCP.Method = v, v, v, v
		e.Target.Server, e.Outcome.Reason, e.Outcome.PolicyRule = v, v, v
		e.Correlation.SessionID = v
		n, err := Normalize(e, now)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, n.Normalized.CEF)
	}
	for _, e := range goldenEvents() {
		n, err := Normalize(e, now)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, n.Normalized.CEF)
	}
	f := goldenFinding()
	f.Summary, f.Principal.Subject = peerHostile[len(peerHostile)-3], "mallory | risk=low"
	lines = append(lines, FindingCEF(goldenFinding()), FindingCEF(f))

	res := runPeer[vrlResult](t, "cef_parse.py", nil, lines)
	for i, l := range lines {
		line := l.(string)
		ours, err := parseCEF(line)
		if err != nil {
			t.Fatalf("our parser rejects %.200q: %v", line, err)
		}
		if res[i].Error != "" {
			t.Errorf("VRL rejects %.200q: %s", line, res[i].Error)
			continue
		}
		want := map[string]string{}
		for j, k := range vrlHeaderKeys {
			want[k] = unquote(strings.TrimSpace(ours.Header[j]))
		}
		for j, k := range ours.Keys {
			v := ours.Ext[k]
			want[k] = vrlExt(v, j == len(ours.Keys)-1)
		}
		for k := range mergeKeys(res[i].OK, want) {
			if res[i].OK[k] != want[k] {
				t.Errorf("line %d: %s = %.80q from VRL, %.80q from ours; line %.200q", i, k, res[i].OK[k], want[k], line)
			}
		}
	}
}

func mergeKeys(a, b map[string]string) map[string]bool {
	m := map[string]bool{}
	for k := range a {
		m[k] = true
	}
	for k := range b {
		m[k] = true
	}
	return m
}
