package normalize

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// CEF renders one ArcSight Common Event Format line:
//
//	CEF:0|Device Vendor|Device Product|Device Version|Signature ID|Name|Severity|Extension
//
// Escaping follows the CEF specification (Micro Focus "Implementing ArcSight CEF", rev. 25):
//   - header fields: `\` → `\\` and `|` → `\|`; a header cannot span lines, so CR and LF become
//     a space;
//   - extension values: `\` → `\\`, `=` → `\=`, LF → `\n`, CR → `\r` (a pipe needs no escape
//     there).
//
// CEF is UTF-8 text read by SIEMs, terminals and syslog relays. Invalid UTF-8 and control
// characters other than TAB, CR and LF have no CEF escape, so they become U+FFFD: a hostile tool
// name or resource URI can neither forge a second log line nor drive a terminal. The lossless
// value stays in the event itself (stored as raw evidence).
//
// Extension keys are written as given; callers use the standard CEF keys. Empty values are
// omitted, and so is a custom label when its value is empty, because SIEM parsers treat
// `cs1Label=tool` without `cs1` as noise. The zero CEF is not usable: start with [NewCEF].
type CEF struct {
	b   strings.Builder
	ext bool // at least one extension written
}

// CEFVersion is the CEF format version written in the header.
const CEFVersion = 0

// NewCEF starts a line with its header. severity is clamped to 0–10.
func NewCEF(vendor, product, version, signature, name string, severity int) *CEF {
	c := &CEF{}
	c.b.Grow(512)
	c.b.WriteString("CEF:")
	c.b.WriteString(strconv.Itoa(CEFVersion))
	for _, f := range [...]string{vendor, product, version, signature, name} {
		c.b.WriteByte('|')
		writeEscaped(&c.b, f, true)
	}
	c.b.WriteByte('|')
	c.b.WriteString(strconv.Itoa(clampSeverity(severity)))
	c.b.WriteByte('|')
	return c
}

// Ext adds key=value unless value is empty.
func (c *CEF) Ext(key, value string) *CEF {
	if value == "" {
		return c
	}
	if c.ext {
		c.b.WriteByte(' ')
	}
	c.ext = true
	c.b.WriteString(key)
	c.b.WriteByte('=')
	writeEscaped(&c.b, value, false)
	return c
}

// Int adds key=value unless value is zero (mcpwatch's model uses zero for "not known").
func (c *CEF) Int(key string, value int64) *CEF {
	if value == 0 {
		return c
	}
	return c.Ext(key, strconv.FormatInt(value, 10))
}

// Labeled adds a custom field with its label (`cs1Label=tool cs1=db_query`) unless value is
// empty.
func (c *CEF) Labeled(key, label, value string) *CEF {
	if value == "" {
		return c
	}
	return c.Ext(key+"Label", label).Ext(key, value)
}

// LabeledInt adds a custom number with its label (`cn1Label=jsonrpcErrorCode cn1=-32602`) unless
// value is zero.
func (c *CEF) LabeledInt(key, label string, value int64) *CEF {
	if value == 0 {
		return c
	}
	return c.Ext(key+"Label", label).Ext(key, strconv.FormatInt(value, 10))
}

// Float adds a floating-point value (cfp fields) in its shortest exact decimal form unless it
// is zero or not finite (NaN and ±Inf have no CEF form).
func (c *CEF) Float(key string, value float64) *CEF {
	if value == 0 || math.IsNaN(value) || math.IsInf(value, 0) {
		return c
	}
	return c.Ext(key, strconv.FormatFloat(value, 'f', -1, 64))
}

// LabeledFloat adds a custom floating-point field with its label (`cfp1Label=threatScore
// cfp1=72.5`) unless value is zero or not finite.
func (c *CEF) LabeledFloat(key, label string, value float64) *CEF {
	if value == 0 || math.IsNaN(value) || math.IsInf(value, 0) {
		return c
	}
	return c.Ext(key+"Label", label).Float(key, value)
}

// String returns the line.
func (c *CEF) String() string { return c.b.String() }

// writeEscaped appends s escaped for a header field (header=true) or an extension value. Runs of
// printable ASCII that need no escape are copied whole; everything else goes rune by rune.
func writeEscaped(b *strings.Builder, s string, header bool) {
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c >= 0x20 && c < 0x7f && c != '\\' && !(c == '|' && header) && !(c == '=' && !header) {
			i++
			continue
		}
		b.WriteString(s[start:i])
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		start = i
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
		case r == utf8.RuneError && size <= 1, r < 0x20, r >= 0x7f && r < 0xa0,
			r == '\u2028', r == '\u2029':
			// Invalid UTF-8, C0/C1 controls and Unicode line separators: no CEF escape exists.
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteString(s[start:])
}

func clampSeverity(s int) int {
	return min(max(s, 0), 10)
}
