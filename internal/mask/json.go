package mask

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrInvalidJSON is returned by [Masker.JSON] for input that is not one valid JSON value. Callers
// that must still record something mask the raw text with [Masker.String] instead.
var ErrInvalidJSON = errors.New("mask: invalid JSON")

// JSON masks a JSON document: every string value and every number (a card number sent as a JSON
// number is masked too) is scanned or replaced according to the field rules (see
// [Config.FieldRules]), and a masked number becomes a string. Object keys are kept as they are and
// never scanned. Numbers that are not masked keep their exact text; the output is compact (no
// insignificant whitespace).
//
// Input that is not one valid JSON value yields [ErrInvalidJSON] and no output. Input longer than
// [Config.MaxInput] is not parsed: the result is a JSON string holding the [Masker.String] masking
// of the raw text, cut and flagged [KindTruncated] — still valid JSON, and nothing past the cap is
// passed through.
func (m *Masker) JSON(raw []byte) ([]byte, map[string]int, error) {
	var c [numKinds]int
	if len(raw) > m.maxInput {
		out := appendString(nil, m.capped(string(raw), &c))
		return out, countsMap(&c), nil
	}
	// Validating first makes the contract exact (what json.Valid accepts is masked, nothing else)
	// and bounds nesting: the standard scanner refuses depth over 10000.
	if !json.Valid(raw) {
		return nil, nil, ErrInvalidJSON
	}
	w := jsonWalker{m: m, c: &c, out: make([]byte, 0, len(raw)+len(raw)/8)}
	if err := w.walk(raw); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	return w.out, countsMap(&c), nil
}

type frame struct {
	obj     bool
	wantKey bool   // in an object, the next token is a key
	n       int    // members or elements written so far
	act     Action // inherited by the values inside, when not ActionScan
	seg     string // the key or index by which this container is reached from its parent
	key     string // current member key
}

type jsonWalker struct {
	m     *Masker
	c     *[numKinds]int
	out   []byte
	stack []frame
	path  []string // scratch for pointer matching
}

func (w *jsonWalker) walk(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var top *frame
		if len(w.stack) > 0 {
			top = &w.stack[len(w.stack)-1]
		}
		if top != nil && top.obj && top.wantKey {
			if tok == json.Delim('}') {
				w.stack = w.stack[:len(w.stack)-1]
				w.out = append(w.out, '}')
				w.done()
				continue
			}
			key, ok := tok.(string)
			if !ok {
				return fmt.Errorf("object key is %T", tok)
			}
			if top.n > 0 {
				w.out = append(w.out, ',')
			}
			w.out = appendString(w.out, key)
			w.out = append(w.out, ':')
			top.key, top.wantKey = key, false
			continue
		}
		if d, ok := tok.(json.Delim); ok && (d == ']' || d == '}') {
			w.stack = w.stack[:len(w.stack)-1]
			w.out = append(w.out, byte(d))
			w.done()
			continue
		}
		if top != nil && !top.obj && top.n > 0 {
			w.out = append(w.out, ',')
		}
		act, seg := w.action()
		switch v := tok.(type) {
		case json.Delim:
			w.out = append(w.out, byte(v))
			w.stack = append(w.stack, frame{obj: v == '{', wantKey: v == '{', act: act, seg: seg})
			continue // done() when the container closes
		case string:
			switch act {
			case ActionMask:
				w.c[kField]++
				v = w.m.repl[kField]
			case ActionScan:
				v = w.m.mask(v, w.c)
			}
			w.out = appendString(w.out, v)
		case json.Number:
			lit := string(v)
			switch act {
			case ActionMask:
				w.c[kField]++
				w.out = appendString(w.out, w.m.repl[kField])
			case ActionScan:
				if masked := w.m.mask(lit, w.c); masked != lit {
					w.out = appendString(w.out, masked)
					break
				}
				fallthrough
			default:
				w.out = append(w.out, lit...)
			}
		case bool:
			w.out = strconv.AppendBool(w.out, v)
		case nil:
			w.out = append(w.out, "null"...)
		default:
			return fmt.Errorf("unexpected token %T", tok)
		}
		w.done()
	}
}

// done records that a value was completed in the current container.
func (w *jsonWalker) done() {
	if len(w.stack) == 0 {
		return
	}
	top := &w.stack[len(w.stack)-1]
	top.n++
	if top.obj {
		top.wantKey = true
	}
}

// action decides what to do with the value about to be read and returns its path segment.
// Precedence: an enclosing mask or keep, then a pointer rule, a field-name rule, the credential
// name heuristic, and scan.
func (w *jsonWalker) action() (Action, string) {
	if len(w.stack) == 0 {
		return w.pointerAction(nil, ActionScan), ""
	}
	top := &w.stack[len(w.stack)-1]
	seg := top.key
	if !top.obj {
		seg = ""
		if len(w.m.pointers) > 0 {
			seg = strconv.Itoa(top.n)
		}
	}
	if top.act != ActionScan {
		return top.act, seg
	}
	if len(w.m.pointers) > 0 {
		w.path = w.path[:0]
		for _, f := range w.stack[1:] {
			w.path = append(w.path, f.seg)
		}
		w.path = append(w.path, seg)
		if act := w.pointerAction(w.path, ""); act != "" {
			return act, seg
		}
	}
	if !top.obj {
		return ActionScan, seg
	}
	if act, ok := w.m.names[strings.ToLower(top.key)]; ok {
		return act, seg
	}
	if !w.m.noNames && secretName(top.key) {
		return ActionMask, seg
	}
	return ActionScan, seg
}

func (w *jsonWalker) pointerAction(path []string, def Action) Action {
	for _, r := range w.m.pointers {
		if len(r.segs) != len(path) {
			continue
		}
		match := true
		for i, s := range r.segs {
			if s != "*" && s != path[i] {
				match = false
				break
			}
		}
		if match {
			return r.act
		}
	}
	return def
}

// parsePointer splits an RFC 6901 JSON Pointer into unescaped segments.
func parsePointer(p string) ([]string, error) {
	if p == "" || p[0] != '/' {
		return nil, errors.New("a JSON Pointer starts with /")
	}
	var segs []string
	for _, s := range strings.Split(p[1:], "/") {
		for i := 0; i < len(s); i++ {
			if s[i] == '~' && (i+1 == len(s) || s[i+1] != '0' && s[i+1] != '1') {
				return nil, fmt.Errorf("bad escape in segment %q", s)
			}
		}
		segs = append(segs, strings.NewReplacer("~1", "/", "~0", "~").Replace(s))
	}
	return segs, nil
}

// secretExact and secretSuffix are the normalized (lower-case, no "_", "-", ".", " ") field names
// whose values are masked by default.
var (
	secretExact = map[string]bool{
		"password": true, "passwd": true, "pwd": true, "pass": true, "passphrase": true,
		"secret": true, "token": true, "auth": true, "authorization": true,
		"proxyauthorization": true, "cookie": true, "setcookie": true, "apikey": true,
		"credential": true, "credentials": true, "privatekey": true,
	}
	secretSuffix = []string{"password", "passwd", "secret", "token", "apikey", "privatekey", "accesskey", "secretkey"}
)

// secretName reports whether a field name looks like it holds a credential.
func secretName(key string) bool {
	norm, ok := normalizeName(key)
	if !ok {
		return false
	}
	if secretExact[norm] {
		return true
	}
	for _, s := range secretSuffix {
		if strings.HasSuffix(norm, s) {
			return true
		}
	}
	return false
}

// normalizeName lower-cases a field name and drops "_", "-", "." and " ", the form the secret
// name lists hold; false for names over 64 bytes, which no list holds.
func normalizeName(key string) (string, bool) {
	var buf [64]byte
	n := 0
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == '_' || c == '-' || c == '.' || c == ' ' {
			continue
		}
		if n == len(buf) {
			return "", false
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[n] = c
		n++
	}
	return string(buf[:n]), true
}

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD; U+2028 and U+2029 are
// escaped as encoding/json does; <, > and & are not (the output is not embedded in HTML).
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
