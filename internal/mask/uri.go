package mask

import (
	"strings"
	"unicode/utf8"
)

// URI masks a URI for recording: an MCP resource URI (file:///..., https://..., mailto:...,
// custom schemes) or anything used as one, such as a request path. It keeps the URI's shape, so
// that analysts can still group by resource, and removes what it must not carry:
//
//   - user information ("user:password@" before the host) is removed whole and counted as one
//     [KindField];
//   - the value of a query (or fragment, or ";" path) parameter whose name says it holds a
//     credential is replaced by the [KindField] replacement, whatever it looks like, and counted:
//     the names [Config.FieldRules] and the credential heuristic mask in JSON (token,
//     access_token, password, secret, api_key, ...), plus those URLs use for credentials (key,
//     sig, signature, code, code_verifier, session, sessionid, sid, jsessionid, phpsessid,
//     ticket, otp, and names ending in signature, credential or sessionid); [ActionKeep] and
//     [ActionScan] field rules apply to parameter names too, and [Config.NoSecretFieldNames]
//     turns the heuristic off;
//   - everything else (scheme, host, each path segment, each parameter name and value, the
//     fragment) is percent-decoded and scanned by the enabled detectors, like [Masker.String]:
//     an e-mail address in a mailto: URI or a path segment, a phone number in a parameter value.
//
// Parts without findings are kept byte for byte. A part with findings is replaced by its masked
// text, percent-encoding what would change the URI's structure (delimiters, "%", spaces and
// control characters), so the output parses into the same parts. Like [Masker.String], it is
// idempotent, counts findings per kind (nil when none) and cuts input longer than
// [Config.MaxInput].
func (m *Masker) URI(s string) (string, map[string]int) {
	var c [numKinds]int
	var out string
	if len(s) <= m.maxInput {
		out = m.uri(s, &c)
	} else {
		out = m.uri(s[:safeCut(s, m.maxInput)], &c) + m.repl[kTruncated]
		c[kTruncated]++
	}
	return out, countsMap(&c)
}

func (m *Masker) uri(s string, c *[numKinds]int) string {
	var b strings.Builder
	b.Grow(len(s))
	rest, fragment, hasFragment := strings.Cut(s, "#")
	rest, query, hasQuery := strings.Cut(rest, "?")
	if i := schemeEnd(rest); i > 0 {
		m.uriPart(&b, rest[:i], false, c)
		b.WriteByte(':')
		rest = rest[i+1:]
	}
	if auth, ok := strings.CutPrefix(rest, "//"); ok {
		b.WriteString("//")
		end := strings.IndexByte(auth, '/')
		if end < 0 {
			end = len(auth)
		}
		auth, rest = auth[:end], auth[end:]
		if at := strings.LastIndexByte(auth, '@'); at >= 0 {
			auth = auth[at+1:]
			c[kField]++
		}
		m.uriPart(&b, auth, false, c)
	}
	for i, seg := range strings.Split(rest, "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		// "name;param=value;...": path parameters, where servlet containers put session ids.
		head, params, hasParams := strings.Cut(seg, ";")
		m.uriPart(&b, head, true, c)
		if hasParams {
			b.WriteByte(';')
			m.uriParams(&b, params, ';', c)
		}
	}
	if hasQuery {
		b.WriteByte('?')
		m.uriParams(&b, query, '&', c)
	}
	if hasFragment {
		b.WriteByte('#')
		// OAuth's implicit flow returns tokens in the fragment: "#access_token=...&state=...".
		if strings.IndexByte(fragment, '=') >= 0 {
			m.uriParams(&b, fragment, '&', c)
		} else {
			m.uriPart(&b, fragment, true, c)
		}
	}
	return b.String()
}

// schemeEnd returns the index of the ':' ending s's scheme (RFC 3986: a letter, then letters,
// digits, "+", "-" or "."), or -1 when s has none.
func schemeEnd(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isLetter(c):
		case i > 0 && (isDigit(c) || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return i
		default:
			return -1
		}
	}
	return -1
}

// uriParams masks "name=value" parameters separated by sep.
func (m *Masker) uriParams(b *strings.Builder, s string, sep byte, c *[numKinds]int) {
	for i, p := range strings.Split(s, string(sep)) {
		if i > 0 {
			b.WriteByte(sep)
		}
		name, value, hasValue := strings.Cut(p, "=")
		if !hasValue {
			m.uriPart(b, p, true, c)
			continue
		}
		act := m.paramAction(unescape(name))
		switch {
		case act == ActionKeep:
			b.WriteString(p)
			continue
		case act == ActionMask && value != "" && value != m.repl[kField]:
			b.WriteString(name)
			b.WriteByte('=')
			b.WriteString(m.repl[kField])
			c[kField]++
			continue
		}
		m.uriPart(b, name, true, c)
		b.WriteByte('=')
		m.uriPart(b, value, true, c)
	}
}

// paramAction is what to do with the value of the parameter called name: a field-name rule of
// the config, else the credential heuristic, else scan.
func (m *Masker) paramAction(name string) Action {
	if act, ok := m.names[strings.ToLower(name)]; ok {
		return act
	}
	if !m.noNames && (secretName(name) || secretParam(name)) {
		return ActionMask
	}
	return ActionScan
}

// uriSecretExact and uriSecretSuffix are the normalized parameter names (see [secretName]) that
// URLs use for credentials beyond the JSON field names: API keys, signatures of signed URLs
// (AWS, GCS, Azure SAS "sig"), OAuth codes and PKCE verifiers, session ids, one-time codes.
var (
	uriSecretExact = map[string]bool{
		"key": true, "sig": true, "signature": true, "code": true, "codeverifier": true,
		"session": true, "sessionid": true, "sid": true, "jsessionid": true, "phpsessid": true,
		"ticket": true, "otp": true,
	}
	uriSecretSuffix = []string{"signature", "credential", "sessionid"}
)

func secretParam(name string) bool {
	norm, ok := normalizeName(name)
	if !ok {
		return false
	}
	if uriSecretExact[norm] {
		return true
	}
	for _, s := range uriSecretSuffix {
		if strings.HasSuffix(norm, s) {
			return true
		}
	}
	return false
}

// uriPart writes one part of a URI: as it is when the detectors find nothing in its decoded
// text (decode: percent-decode it first), else masked and re-encoded.
func (m *Masker) uriPart(b *strings.Builder, s string, decode bool, c *[numKinds]int) {
	if s == "" {
		return
	}
	text := s
	if decode {
		text = unescape(s)
	}
	masked := m.mask(text, c)
	if masked == text {
		b.WriteString(s)
		return
	}
	escape(b, masked)
}

// unescape percent-decodes s; a "%" not followed by two hex digits stays as it is. "+" is not a
// space here: in a query it may be one, but it also starts an international phone number.
func unescape(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool { return isDigit(c) || 'a' <= c|0x20 && c|0x20 <= 'f' }

func unhex(c byte) byte {
	if isDigit(c) {
		return c - '0'
	}
	return c | 0x20 - 'a' + 10
}

// escape writes masked text into a URI: "%", the delimiters that would split it differently
// ("/", "?", "#", "&", "=", ";", ":", "@"), spaces, quotes and control characters
// percent-encoded, and bytes of invalid UTF-8 too; other characters, replacements' brackets and
// non-ASCII letters included, as they are, for the analyst reading them.
func escape(b *strings.Builder, s string) {
	const hexDigits = "0123456789ABCDEF"
	valid := utf8.ValidString(s)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || strings.IndexByte(`%/?#&=;:@"`, c) >= 0 || (c >= 0x80 && !valid) {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
}
