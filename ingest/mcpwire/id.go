package mcpwire

import (
	"math/big"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// CanonicalID returns the canonical form of a JSON-RPC request id (or MCP progress token): JSON
// text that is equal for two ids exactly when they are the same JSON value, so that a response
// pairs with its request however the server re-encoded the id. Every source keys its pending
// requests by it and records it as [event.Correlation.RequestID], so the gateway, the sandbox
// bridge, the stdio wrapper and the events downstream all agree on which response answers which
// request.
//
// Ids are strings, numbers or null; anything else, and ids longer than [MaxIDLen] bytes, are
// refused with [CodeInvalidRequest]. Leading and trailing JSON whitespace is ignored.
//
// Strings compare by the characters they hold, not by how they were escaped: a server that
// decodes the id and encodes it again (any JSON library does) may turn "\u0061" into "a" or "é"
// into "\u00e9". The canonical form escapes only what JSON requires (" and \ as \" and \\, control
// characters as \b \f \n \r \t or \u00XX, lower-case hex) and writes every other character as
// UTF-8, which is how RFC 8785 (JSON canonicalization) writes strings. A lone surrogate escape
// ("\ud800") is kept as that escape, lower-cased, rather than replaced: JavaScript and Python
// servers echo it as it came, and replacing it with U+FFFD would make distinct ids collide.
//
// Numbers compare by their exact decimal value: 1, 1.0, 1e0 and 10e-1 are one id, and -0 is 0,
// because servers parse ids as numbers and write them back in their own form (JavaScript writes
// 1.0 as 1, Python writes 1e0 as 1.0). Values are never rounded to float64, which would make
// distinct integers above 2^53 collide and pair a response with another request than the one it
// answers: a server that rounds such an id itself (JavaScript) answers an id that pairs with
// nothing, which is audited as an unmatched response instead of as someone else's. The canonical
// form is the shortest plain decimal of the value (integers without fraction or exponent,
// fractions with a point, no trailing zeros) when it needs at most 21 padding zeros, else the
// significant digits as an integer with an exponent ("1e400", "15e-31"), so that a short id can
// not expand into a long key.
//
// null is "null". A string never equals a number: "1" and 1 are distinct ids in JSON-RPC.
func CanonicalID(raw []byte) (string, *Error) {
	raw = trimJSONSpace(raw)
	if len(raw) > MaxIDLen {
		return "", invalid("id longer than %d bytes", MaxIDLen)
	}
	if len(raw) == 0 {
		return "", invalid("id must be a string or a number")
	}
	switch c := raw[0]; {
	case c == '"':
		s, ok := canonicalString(raw)
		if !ok {
			return "", invalid("bad string id")
		}
		return s, nil
	case c == '-' || (c >= '0' && c <= '9'):
		s, ok := canonicalNumber(raw)
		if !ok {
			return "", invalid("bad number id")
		}
		return s, nil
	case string(raw) == "null":
		return "null", nil
	}
	return "", invalid("id must be a string or a number")
}

func trimJSONSpace(b []byte) []byte {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// canonicalString re-encodes a JSON string literal (quotes included) in the canonical form.
func canonicalString(raw []byte) (string, bool) {
	n := len(raw)
	if n < 2 || raw[n-1] != '"' {
		return "", false
	}
	body := raw[1 : n-1]
	// Fast path: no escapes and nothing that needs one is already canonical.
	plain := true
	for _, c := range body {
		if c < 0x20 || c == '"' || c == '\\' {
			plain = false
			break
		}
	}
	if plain {
		if !utf8.Valid(body) {
			return "", false
		}
		return string(raw), true
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteByte('"')
	for i := 0; i < len(body); {
		c := body[i]
		switch {
		case c == '"' || c < 0x20:
			return "", false // must be escaped in JSON
		case c != '\\':
			r, size := utf8.DecodeRune(body[i:])
			if r == utf8.RuneError && size == 1 {
				return "", false
			}
			b.Write(body[i : i+size])
			i += size
			continue
		}
		if i+1 >= len(body) {
			return "", false
		}
		switch e := body[i+1]; e {
		case '"', '\\', '/':
			writeRune(&b, rune(e))
			i += 2
		case 'b':
			writeRune(&b, '\b')
			i += 2
		case 'f':
			writeRune(&b, '\f')
			i += 2
		case 'n':
			writeRune(&b, '\n')
			i += 2
		case 'r':
			writeRune(&b, '\r')
			i += 2
		case 't':
			writeRune(&b, '\t')
			i += 2
		case 'u':
			u, ok := hex4(body, i+2)
			if !ok {
				return "", false
			}
			i += 6
			if utf16.IsSurrogate(rune(u)) {
				if u < 0xdc00 { // a high surrogate: a pair if a low one follows
					if lo, ok := hex4(body, i+2); ok && i+1 < len(body) && body[i] == '\\' && body[i+1] == 'u' && lo >= 0xdc00 && lo <= 0xdfff {
						writeRune(&b, utf16.DecodeRune(rune(u), rune(lo)))
						i += 6
						continue
					}
				}
				b.WriteString(`\u`)
				b.WriteString(strconv.FormatUint(uint64(u), 16)) // 4 digits: d800..dfff
				continue
			}
			writeRune(&b, rune(u))
		default:
			return "", false
		}
	}
	b.WriteByte('"')
	return b.String(), true
}

// hex4 reads the four hex digits at b[i:i+4].
func hex4(b []byte, i int) (uint16, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[i:i+4]), 16, 16)
	return uint16(v), err == nil
}

// writeRune writes r as the canonical form spells it inside a string.
func writeRune(b *strings.Builder, r rune) {
	const hexDigits = "0123456789abcdef"
	switch {
	case r == '"':
		b.WriteString(`\"`)
	case r == '\\':
		b.WriteString(`\\`)
	case r == '\b':
		b.WriteString(`\b`)
	case r == '\f':
		b.WriteString(`\f`)
	case r == '\n':
		b.WriteString(`\n`)
	case r == '\r':
		b.WriteString(`\r`)
	case r == '\t':
		b.WriteString(`\t`)
	case r < 0x20:
		b.WriteString(`\u00`)
		b.WriteByte(hexDigits[r>>4])
		b.WriteByte(hexDigits[r&0xf])
	default:
		b.WriteRune(r)
	}
}

// maxPadding is the most zeros the plain form of a number may add to its significant digits
// before the exponent form is used instead (JavaScript writes integers plainly below 1e21).
const maxPadding = 21

// canonicalNumber re-encodes a JSON number by its exact value.
func canonicalNumber(raw []byte) (string, bool) {
	i := 0
	neg := raw[0] == '-'
	if neg {
		i++
	}
	// Fast path: an integer without leading zeros is already canonical ("-0" is not).
	if j := i; j < len(raw) && raw[j] >= '1' && raw[j] <= '9' {
		for j < len(raw) && raw[j] >= '0' && raw[j] <= '9' {
			j++
		}
		if j == len(raw) {
			return string(raw), true
		}
	}
	// int: 0 | [1-9][0-9]*
	intStart := i
	switch {
	case i < len(raw) && raw[i] == '0':
		i++
	case i < len(raw) && raw[i] >= '1' && raw[i] <= '9':
		for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
			i++
		}
	default:
		return "", false
	}
	intDigits := raw[intStart:i]
	var frac []byte
	if i < len(raw) && raw[i] == '.' {
		i++
		start := i
		for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
			i++
		}
		if i == start {
			return "", false
		}
		frac = raw[start:i]
	}
	exp := new(big.Int)
	if i < len(raw) && (raw[i] == 'e' || raw[i] == 'E') {
		i++
		start := i
		if i < len(raw) && (raw[i] == '+' || raw[i] == '-') {
			i++
		}
		digits := i
		for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
			i++
		}
		if i == digits {
			return "", false
		}
		exp.SetString(string(raw[start:i]), 10)
	}
	if i != len(raw) {
		return "", false
	}
	// value = digits × 10^e, digits without leading or trailing zeros.
	digits := strings.TrimLeft(string(intDigits)+string(frac), "0")
	if digits == "" {
		return "0", true
	}
	e := exp.Sub(exp, big.NewInt(int64(len(frac))))
	if t := strings.TrimRight(digits, "0"); len(t) < len(digits) {
		e.Add(e, big.NewInt(int64(len(digits)-len(t))))
		digits = t
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	switch {
	case e.Sign() >= 0 && e.IsInt64() && e.Int64() <= maxPadding:
		b.WriteString(digits)
		b.WriteString(strings.Repeat("0", int(e.Int64())))
	case e.Sign() < 0 && e.IsInt64() && -e.Int64() < int64(len(digits)):
		point := len(digits) + int(e.Int64())
		b.WriteString(digits[:point])
		b.WriteByte('.')
		b.WriteString(digits[point:])
	case e.Sign() < 0 && e.IsInt64() && -e.Int64()-int64(len(digits)) <= maxPadding:
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", int(-e.Int64())-len(digits)))
		b.WriteString(digits)
	default:
		b.WriteString(digits)
		b.WriteByte('e')
		b.WriteString(e.String())
	}
	return b.String(), true
}
