package mcpwire

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// Members returns the raw values of the named members of a JSON object, nil where absent. It
// refuses anything but one object, a wanted name given twice, and a name equal to a wanted one
// under case folding: JSON parsers resolve those differently (Go's encoding/json matches
// case-insensitively and keeps the last duplicate), and the upstream must not act on another
// member than the one the auditor checked. raw must be valid JSON ([json.Valid]); the scan below
// only tracks structure, which keeps parsing allocation-light on every message. On other input it
// refuses or misreads, but never panics.
func Members(raw []byte, names ...string) ([]json.RawMessage, *Error) {
	s := scan{b: raw}
	s.ws()
	if !s.eat('{') {
		return nil, invalid("expected a JSON object")
	}
	out := make([]json.RawMessage, len(names))
	s.ws()
	if !s.eat('}') {
		for {
			s.ws()
			key, ok := s.key()
			if !ok {
				return nil, parseErr("bad object key")
			}
			s.ws()
			if !s.eat(':') {
				return nil, parseErr("expected ':'")
			}
			s.ws()
			start := s.i
			if !s.value() {
				return nil, parseErr("bad value")
			}
			for i, n := range names {
				if key == n {
					if out[i] != nil {
						return nil, invalid("member %q given twice", n)
					}
					out[i] = raw[start:s.i]
					break
				}
				if foldEqual(key, n) {
					return nil, invalid("member %q differs from %q only in case", Clip(key, 64), n)
				}
			}
			s.ws()
			if s.eat(',') {
				continue
			}
			if s.eat('}') {
				break
			}
			return nil, parseErr("expected ',' or '}'")
		}
	}
	s.ws()
	if s.i != len(raw) {
		return nil, parseErr("data after the JSON value")
	}
	return out, nil
}

// foldEqual reports whether a and b are equal under Unicode case folding, without allocating for
// the common all-ASCII case.
func foldEqual(a, b string) bool {
	if len(a) == len(b) {
		ascii := true
		for i := 0; i < len(a); i++ {
			ca, cb := a[i], b[i]
			if ca >= utf8.RuneSelf || cb >= utf8.RuneSelf {
				ascii = false
				break
			}
			if lc := ca | 0x20; ca != cb && (lc < 'a' || lc > 'z' || lc != cb|0x20) {
				return false
			}
		}
		if ascii {
			return true
		}
	}
	return strings.EqualFold(a, b)
}

// scan walks valid JSON structurally.
type scan struct {
	b []byte
	i int
}

func (s *scan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

func (s *scan) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str skips a string and reports whether it had escapes.
func (s *scan) str() (escaped, ok bool) {
	if !s.eat('"') {
		return false, false
	}
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '"':
			s.i++
			return escaped, true
		case '\\':
			escaped = true
			s.i += 2
		default:
			s.i++
		}
	}
	return escaped, false
}

// key reads an object key, decoding escapes ("n\u0061me" is "name" to every parser).
func (s *scan) key() (string, bool) {
	start := s.i
	escaped, ok := s.str()
	if !ok {
		return "", false
	}
	raw := s.b[start:s.i]
	if !escaped {
		return string(raw[1 : len(raw)-1]), true
	}
	var k string
	if json.Unmarshal(raw, &k) != nil {
		return "", false
	}
	return k, true
}

func (s *scan) value() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		_, ok := s.str()
		return ok
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				if _, ok := s.str(); !ok {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return true
				}
			}
			s.i++
		}
		return false
	}
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return s.i > start
		}
		s.i++
	}
	return s.i > start
}
