package normalize

import (
	"strings"
	"unicode/utf8"

	"github.com/mcpwatch/mcpwatch/event"
)

// Line renders the source document's one-line audit format:
//
//	2025-01-22T09:06:12 | MCP-1001 | user=alice | tool=db_query | resource=sales_data | risk=low
//
// The time is UTC to the second (the format has no zone). Fields follow in this order and only
// when known: user (subject, else OAuth client id), tool, resource (resource URI), prompt, server,
// result (only when not allowed), risk. Risk maps the CEF severity the ArcSight way: 0–3 low,
// 4–6 medium, 7–8 high, 9–10 very-high.
//
// Values are escaped so that a line is always one line with unambiguous separators: `\` → `\\`,
// `|` → `\|`, LF → `\n`, CR → `\r`; invalid UTF-8 and other control characters become U+FFFD.
// The signature is e.Normalized's when set, else [Classify]'s.
func Line(e event.Event) string {
	sig := Classify(&e).ID
	if e.Normalized != nil && e.Normalized.Signature != "" {
		sig = e.Normalized.Signature
	}
	var b strings.Builder
	b.Grow(128)
	b.WriteString(e.Time.UTC().Format("2006-01-02T15:04:05"))
	b.WriteString(" | ")
	writeLine(&b, sig)
	field := func(k, v string) {
		if v == "" {
			return
		}
		b.WriteString(" | ")
		b.WriteString(k)
		b.WriteByte('=')
		writeLine(&b, v)
	}
	user := e.Principal.Subject
	if user == "" {
		user = e.Principal.ClientID
	}
	field("user", user)
	if m := e.MCP; m != nil {
		field("tool", m.Tool)
		field("resource", m.ResourceURI)
		field("prompt", m.Prompt)
	}
	field("server", e.Target.Server)
	if e.Outcome.Result != event.ResultAllowed {
		field("result", string(e.Outcome.Result))
	}
	field("risk", Risk(e.Severity))
	return b.String()
}

// Risk names a CEF severity: low (0–3), medium (4–6), high (7–8), very-high (9–10).
func Risk(severity int) string {
	switch s := clampSeverity(severity); {
	case s <= 3:
		return "low"
	case s <= 6:
		return "medium"
	case s <= 8:
		return "high"
	default:
		return "very-high"
	}
}

func writeLine(b *strings.Builder, s string) {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '|':
			b.WriteString(`\|`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == utf8.RuneError && size <= 1, r < 0x20 && r != '\t', r >= 0x7f && r < 0xa0,
			r == '\u2028', r == '\u2029':
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteRune(r)
		}
	}
}
