package mask

import (
	"net/netip"
	"strings"
)

// scanner finds the spans of one input. Detectors run as passes in a fixed order; a later pass
// sees what earlier passes matched as covered, and [scanner.at] returns 0 — a boundary that
// belongs to no character class — for covered bytes, as it does past either end. A second masking
// run sees the replacement's brackets in the same places, so it finds nothing the first run did not
// (the argument, pass by pass, is in the comments below; FuzzString checks it).
//
// The order matters where a pass looks at context: the digit pass (decimal points, word
// boundaries) runs after every pass whose finding may end in a digit next to a '.', and the IP
// passes after the digit pass.
type scanner struct {
	s      string
	on     *[numKinds]bool
	cov    []uint64 // bitset of covered bytes; nil until the first span
	spans  []span
	groups []group // reused by the digit pass
	awsCtx bool    // the token pass saw an AWS key or a "secret" word: run the aws_secret pass
}

func (sc *scanner) run() {
	if sc.on[kPrivateKey] {
		sc.privateKeys()
	}
	if sc.on[kEmail] {
		sc.emails()
	}
	sc.tokens()
	if sc.on[kAWSSecret] && sc.awsCtx {
		sc.awsSecrets()
	}
	if sc.on[kCard] || sc.on[kRRN] || sc.on[kPhoneKR] || sc.on[kPhoneE164] {
		sc.digits()
	}
	if sc.on[kIPv4] {
		sc.ipv4s()
	}
	if sc.on[kIPv6] {
		sc.ipv6s()
	}
}

// at returns s[i], or 0 when i is out of range or covered by an earlier finding.
func (sc *scanner) at(i int) byte {
	if uint(i) >= uint(len(sc.s)) {
		return 0
	}
	if sc.covered(i) {
		return 0
	}
	return sc.s[i]
}

func (sc *scanner) covered(i int) bool {
	return sc.cov != nil && sc.cov[i>>6]&(1<<(uint(i)&63)) != 0
}

func (sc *scanner) add(start, end int, k kind) {
	if sc.cov == nil {
		sc.cov = make([]uint64, (len(sc.s)+63)/64)
	}
	for i := start; i < end; i++ {
		sc.cov[i>>6] |= 1 << (uint(i) & 63)
	}
	sc.spans = append(sc.spans, span{start: start, end: end, k: k})
}

func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
func isLetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }
func isUpper(c byte) bool  { return 'A' <= c && c <= 'Z' }
func isAlnum(c byte) bool  { return isDigit(c) || isLetter(c) }
func isWord(c byte) bool   { return isAlnum(c) || c == '_' }

// isToken is the alphabet of API keys, AWS key ids and JWT segments (base64url).
func isToken(c byte) bool { return isWord(c) || c == '-' }

// isB64Token is RFC 6750's b64token alphabet, for bearer credentials.
func isB64Token(c byte) bool { return isToken(c) || strings.IndexByte("._~+/=", c) >= 0 }

// isLocal is the alphabet of an e-mail local part accepted here.
func isLocal(c byte) bool { return isAlnum(c) || strings.IndexByte("._%+-", c) >= 0 }

// isPEMBody is what may follow a PEM header: base64, whitespace, escaped newlines (JSON text),
// the punctuation of encrypted-key headers ("Proc-Type: 4,ENCRYPTED"), and the END line. It
// includes '.' so that a block never ends right before a decimal point (see the digit pass).
func isPEMBody(c byte) bool {
	return isAlnum(c) || strings.IndexByte("+/= \t\r\n\\:,-.", c) >= 0
}

// --- private_key -------------------------------------------------------------------------------

// privateKeys finds "-----BEGIN ... PRIVATE KEY-----" blocks through the next "-----END ...
// PRIVATE KEY-----" line, whatever lies between. A block with no END line after it (a truncated key
// is still a key) runs to the first byte outside the PEM alphabet. It is the first pass, so
// everything inside a block belongs to the block. Each END search starts where the last stopped
// and a failed one is not repeated, so the pass is linear.
func (sc *scanner) privateKeys() {
	const begin, endLine = "-----BEGIN ", "-----END "
	s := sc.s
	noEnd := false
	for off := 0; off < len(s); {
		i := strings.Index(s[off:], begin)
		if i < 0 {
			return
		}
		i += off
		hdrEnd, ok := pemLine(s, i+len(begin))
		if !ok {
			off = i + len(begin)
			continue
		}
		end := -1
		for k := hdrEnd; !noEnd; {
			e := strings.Index(s[k:], endLine)
			if e < 0 {
				noEnd = true
				break
			}
			e += k + len(endLine)
			if fe, ok := pemLine(s, e); ok {
				end = fe
				break
			}
			k = e
		}
		if end < 0 {
			end = hdrEnd
			for end < len(s) && isPEMBody(s[end]) {
				end++
			}
		}
		sc.add(i, end, kPrivateKey)
		off = end
	}
}

// pemLine checks that s[i:] is a label ending in "PRIVATE KEY" or "PRIVATE KEY BLOCK" followed by
// "-----" and returns the index after it.
func pemLine(s string, i int) (int, bool) {
	j := i
	for j < len(s) && j-i < 64 && (isUpper(s[j]) || isDigit(s[j]) || s[j] == ' ') {
		j++
	}
	label := s[i:j]
	if !strings.HasSuffix(label, "PRIVATE KEY") && !strings.HasSuffix(label, "PRIVATE KEY BLOCK") {
		return 0, false
	}
	if !strings.HasPrefix(s[j:], "-----") {
		return 0, false
	}
	return j + 5, true
}

// --- email -------------------------------------------------------------------------------------

// emails finds local@domain where the local part is [A-Za-z0-9._%+-]+ and the domain has at least
// two labels, the last all letters (2 or more) and not followed by a letter or digit. The domain
// ends at the longest such label. Neither alphabet contains '@', so every byte is looked at a
// bounded number of times.
func (sc *scanner) emails() {
	s := sc.s
	for off := 0; off < len(s); {
		i := strings.IndexByte(s[off:], '@')
		if i < 0 {
			return
		}
		at := off + i
		off = at + 1
		l := at
		for isLocal(sc.at(l - 1)) {
			l--
		}
		if l == at || !isAlnum(sc.at(at+1)) {
			continue
		}
		end := -1
		dots, letters, allLetters := 0, 0, true
		r := at + 1
		for ; ; r++ {
			c := sc.at(r)
			if isAlnum(c) {
				if isLetter(c) {
					letters++
				} else {
					allLetters = false
				}
				continue
			}
			// r ends a run of letters and digits: is it a valid end of the domain?
			if dots > 0 && allLetters && letters >= 2 {
				end = r
			}
			if c == '.' {
				dots++
				letters, allLetters = 0, true
				continue
			}
			if c == '-' {
				allLetters = false
				continue
			}
			break
		}
		if end > 0 {
			sc.add(l, end, kEmail)
			off = end
		}
	}
}

// --- tokens: api_key, aws_access_key, jwt, iban, bearer ----------------------------------------

// apiKeyRule is a well-known key prefix and the least the rest must be. Rules only ever ask for a
// minimum length and an alphabet, never an exact length, so a longer token that passed in the first
// run never turns into a shorter one that passes in the second.
type apiKeyRule struct {
	prefix    string
	min       int  // least length of the rest
	alnumOnly bool // the rest is letters and digits only
}

var apiKeyRules = []apiKeyRule{
	{"sk-", 20, false},                                                                                 // OpenAI (sk-, sk-proj-), Anthropic (sk-ant-api03-)
	{"sk_live_", 16, false}, {"sk_test_", 16, false}, {"rk_live_", 16, false}, {"rk_test_", 16, false}, // Stripe
	{"ghp_", 30, true}, {"gho_", 30, true}, {"ghu_", 30, true}, {"ghs_", 30, true}, {"ghr_", 30, true}, // GitHub
	{"github_pat_", 22, false},
	{"xoxb-", 10, false}, {"xoxa-", 10, false}, {"xoxp-", 10, false}, {"xoxr-", 10, false}, {"xoxs-", 10, false}, // Slack
	{"AIza", 35, false},   // Google API key
	{"glpat-", 20, false}, // GitLab
	{"hf_", 30, true},     // Hugging Face
	{"npm_", 36, true},    // npm
}

// tokens walks the maximal runs of [A-Za-z0-9_-] and classifies each by its start.
func (sc *scanner) tokens() {
	s, n := sc.s, len(sc.s)
	for i := 0; i < n; {
		if !isToken(s[i]) || sc.covered(i) {
			i++
			continue
		}
		j := i + 1
		for j < n && isToken(s[j]) && !sc.covered(j) {
			j++
		}
		i = max(j, sc.token(i, j))
	}
}

// token classifies the token s[i:j] and returns where scanning resumes.
func (sc *scanner) token(i, j int) int {
	t := sc.s[i:j]
	if sc.on[kJWT] && strings.HasPrefix(t, "eyJ") && len(t) >= 10 {
		if end, ok := sc.jwt(j); ok {
			sc.add(i, end, kJWT)
			return end
		}
	}
	if isAWSKeyID(t) {
		sc.awsCtx = true
		if sc.on[kAWSAccessKey] {
			sc.add(i, j, kAWSAccessKey)
			return j
		}
	}
	if sc.on[kAPIKey] && apiKey(t) {
		sc.add(i, j, kAPIKey)
		return j
	}
	if sc.on[kIBAN] && len(t) >= 4 && isLetter(t[0]) && isLetter(t[1]) && isDigit(t[2]) && isDigit(t[3]) {
		if end, ok := sc.iban(i); ok {
			sc.add(i, end, kIBAN)
			return end
		}
	}
	if sc.on[kBearer] {
		if strings.EqualFold(t, "bearer") {
			return sc.bearer(j)
		}
		if len(t) >= 13 && strings.EqualFold(t[len(t)-13:], "authorization") {
			return sc.authorization(j)
		}
	}
	if !sc.awsCtx && len(t) >= 6 && containsFold(t, "secret") {
		sc.awsCtx = true
	}
	return j
}

// jwt extends the token ending at j over ".segment" parts and reports the end of a JWT: the first
// segment (checked by the caller) starts "eyJ", and at least two dots follow with a second segment
// of two or more characters. An empty third segment (alg "none") is allowed; further segments
// (JWE) and trailing dots are included. A failed attempt reads only the second segment, so a long
// chain of almost-tokens costs linear time.
func (sc *scanner) jwt(j int) (int, bool) {
	if sc.at(j) != '.' {
		return 0, false
	}
	k := j + 1
	for isToken(sc.at(k)) {
		k++
	}
	if k-(j+1) < 2 || sc.at(k) != '.' {
		return 0, false
	}
	for sc.at(k) == '.' {
		k++
		for isToken(sc.at(k)) {
			k++
		}
	}
	return k, true
}

func isAWSKeyID(t string) bool {
	if len(t) != 20 || !strings.HasPrefix(t, "AKIA") && !strings.HasPrefix(t, "ASIA") {
		return false
	}
	for i := 4; i < 20; i++ {
		if !isUpper(t[i]) && !isDigit(t[i]) {
			return false
		}
	}
	return true
}

// apiKeyFirst marks the first bytes of the prefixes in apiKeyRules, so most tokens are refused
// by one table lookup.
var apiKeyFirst = func() (t [256]bool) {
	for _, r := range apiKeyRules {
		t[r.prefix[0]] = true
	}
	return t
}()

func apiKey(t string) bool {
	if len(t) < 13 || !apiKeyFirst[t[0]] {
		return false
	}
	for _, r := range apiKeyRules {
		if !strings.HasPrefix(t, r.prefix) {
			continue
		}
		rest := t[len(r.prefix):]
		if len(rest) < r.min {
			return false
		}
		digit, letter := false, false
		for k := 0; k < len(rest); k++ {
			c := rest[k]
			switch {
			case isDigit(c):
				digit = true
			case isLetter(c):
				letter = true
			case r.alnumOnly:
				return false
			}
		}
		return digit && letter
	}
	return false
}

// bearer masks the credential after "Bearer" and one or more spaces: a b64token of 8 or more
// characters that contains a digit or is 20 or longer ("Bearer authentication" is prose). The
// scheme name stays visible.
func (sc *scanner) bearer(j int) int {
	p := j
	for sc.at(p) == ' ' || sc.at(p) == '\t' {
		p++
	}
	if p == j {
		return j
	}
	q, digit := p, false
	for isB64Token(sc.at(q)) {
		digit = digit || isDigit(sc.at(q))
		q++
	}
	if n := q - p; n >= 8 && (digit || n >= 20) {
		sc.add(p, q, kBearer)
		return q
	}
	return p
}

// authorization masks the value after an "...authorization" token (also "Proxy-Authorization",
// a JSON key or a query parameter): after optional quotes and spaces, ':' or '=', then up to two
// space-separated b64tokens ("Basic dXNlcjpwYXNz", "Bearer abc", "token ghp_...").
func (sc *scanner) authorization(j int) int {
	p := j
	for k := 0; k < 4 && strings.IndexByte("\"' \t", sc.at(p)) >= 0; k++ {
		p++
	}
	if c := sc.at(p); c != ':' && c != '=' {
		return j
	}
	p++
	for k := 0; k < 4 && strings.IndexByte("\"' \t", sc.at(p)) >= 0; k++ {
		p++
	}
	q := p
	for isB64Token(sc.at(q)) {
		q++
	}
	if q == p {
		return j
	}
	if sc.at(q) == ' ' && isB64Token(sc.at(q+1)) {
		q++
		for isB64Token(sc.at(q)) {
			q++
		}
	}
	sc.add(p, q, kBearer)
	return q
}

// iban checks for an IBAN at i: country code, check digits and BBAN, exactly as long as the
// country's IBAN, either compact or in groups of four separated by single spaces, not followed by
// a token character, and mod-97 valid.
func (sc *scanner) iban(i int) (int, bool) {
	want := ibanLength(sc.s[i], sc.s[i+1])
	if want == 0 {
		return 0, false
	}
	var buf [34]byte
	n, p := 0, i
	for n < want {
		c := sc.at(p)
		if isAlnum(c) {
			buf[n] = c
			n++
			p++
			continue
		}
		if c == ' ' && n%4 == 0 && isAlnum(sc.at(p+1)) {
			p++
			continue
		}
		return 0, false
	}
	if isToken(sc.at(p)) || !ibanValid(buf[:n]) {
		return 0, false
	}
	return p, true
}

// containsFold reports whether t contains the lower-case ASCII word w, ignoring case.
func containsFold(t, w string) bool {
	for i := 0; i+len(w) <= len(t); i++ {
		if t[i]|0x20 == w[0] && strings.EqualFold(t[i:i+len(w)], w) {
			return true
		}
	}
	return false
}

// --- aws_secret --------------------------------------------------------------------------------

func isB64(c byte) bool { return isAlnum(c) || c == '+' || c == '/' }

// awsSecrets finds runs of 40 or more base64 characters that are the value of an AWS context: the
// token just before them (across quotes, ':', '=', ',', ';' and spaces) is an AWS access key id
// or a name containing "secret" and "aws" or "access" (aws_secret_access_key, SecretAccessKey).
// The rule asks for a minimum length, not exactly 40, so that a run cut short by a later finding
// cannot pass in a second run when the whole run failed in the first.
func (sc *scanner) awsSecrets() {
	s := sc.s
	for i := 0; i < len(s); {
		if !isB64(sc.at(i)) {
			i++
			continue
		}
		j := i + 1
		for isB64(sc.at(j)) {
			j++
		}
		if j-i >= 40 && awsContext(s, i) {
			sc.add(i, j, kAWSSecret)
		}
		i = j
	}
}

// awsContext looks at the original text before i: it may find more context than a second run,
// which sees the key id replaced, never less.
func awsContext(s string, i int) bool {
	p := i
	for k := 0; k < 8 && p > 0 && strings.IndexByte(" \t\r\n\"'`:=,;", s[p-1]) >= 0; k++ {
		p--
	}
	if p == i {
		return false
	}
	q := p
	for q > 0 && p-q < 64 && isToken(s[q-1]) {
		q--
	}
	t := s[q:p]
	return isAWSKeyID(t) || containsFold(t, "secret") && (containsFold(t, "aws") || containsFold(t, "access"))
}

// --- digits: card, rrn_kr, phone_kr, phone_e164 ------------------------------------------------

// group is a maximal run of digits s[start:end].
type group struct{ start, end int }

// digits splits the input into runs of digit groups joined by single spaces or dashes and tries
// every sub-sequence of at most 19 digits of each run against the numeric kinds. A run may start
// or end only at a word boundary: not next to a letter, digit or '_', and not at a decimal point
// between digits (so the fraction of 3.14159265358979323 is no card). The candidates of one run
// may overlap; they are merged when masking.
func (sc *scanner) digits() {
	s, n := sc.s, len(sc.s)
	for i := 0; i < n; {
		if !isDigit(s[i]) || sc.covered(i) {
			i++
			continue
		}
		g := sc.groups[:0]
		p := i
		for {
			q := p
			for isDigit(sc.at(q)) {
				q++
			}
			g = append(g, group{p, q})
			if c := sc.at(q); (c == ' ' || c == '-') && isDigit(sc.at(q+1)) {
				p = q + 1
				continue
			}
			break
		}
		sc.groups = g
		sc.numbers(g)
		i = g[len(g)-1].end
	}
}

func (sc *scanner) prevOK(i int) bool {
	c := sc.at(i - 1)
	return !isWord(c) && !(c == '.' && isDigit(sc.at(i-2)))
}

func (sc *scanner) nextOK(i int) bool {
	c := sc.at(i)
	return !isWord(c) && !(c == '.' && isDigit(sc.at(i+1)))
}

func (sc *scanner) numbers(g []group) {
	s := sc.s
	var found [8]span
	cands := found[:0]
	lastOK := sc.nextOK(g[len(g)-1].end)
	// The byte before '+' is not looked at: it may belong to an address the IP passes mask later,
	// and a second run would then see a bracket there.
	plus := sc.on[kPhoneE164] && sc.at(g[0].start-1) == '+'
	for a := range g {
		if a == 0 && !plus && !sc.prevOK(g[0].start) {
			continue
		}
		var buf [19]byte
		nd := 0
		e164 := -1
		for b := a; b < len(g); b++ {
			gl := g[b].end - g[b].start
			if nd+gl > len(buf) {
				break
			}
			nd += copy(buf[nd:], s[g[b].start:g[b].end])
			if b == len(g)-1 && !lastOK {
				break
			}
			d := buf[:nd]
			if a == 0 && plus && nd >= 8 && nd <= 15 {
				e164 = b
			}
			if a == 0 && !sc.prevOK(g[0].start) {
				continue // only the '+' form may start here
			}
			var k kind
			switch {
			case sc.on[kRRN] && rrn(s, g[a:b+1], d):
				k = kRRN
			case sc.on[kCard] && card(g[a:b+1], d):
				k = kCard
			case sc.on[kPhoneKR] && phoneKR(g[a:b+1], d):
				k = kPhoneKR
			default:
				continue
			}
			cands = append(cands, span{g[a].start, g[b].end, k})
		}
		if e164 >= 0 {
			cands = append(cands, span{g[0].start - 1, g[e164].end, kPhoneE164})
		}
	}
	for _, c := range cands {
		sc.add(c.start, c.end, c.k)
	}
}

// rrn: YYMMDD-GNNNNNN with a valid date and G in 1–8, or the 13 digits without the dash when the
// check digit is also valid (numbers issued since October 2020 have no check digit, so the dashed
// form does not require it; the bare form needs it to tell it from any other 13 digits).
func rrn(s string, g []group, d []byte) bool {
	switch {
	case len(g) == 2 && len(d) == 13 && g[0].end-g[0].start == 6 && s[g[0].end] == '-':
		return rrnValid(d, false)
	case len(g) == 1 && len(d) == 13:
		return rrnValid(d, true)
	}
	return false
}

// card: 13–19 digits, not starting with 0, Luhn-valid, either in one group or grouped as printed
// on cards: fours (the last group 1–4 digits), 4-6-5 or 4-6-4.
func card(g []group, d []byte) bool {
	if len(d) < 13 || d[0] == '0' {
		return false
	}
	if len(g) == 1 {
		return luhn(d)
	}
	gl := func(i int) int { return g[i].end - g[i].start }
	if len(g) == 3 && gl(0) == 4 && gl(1) == 6 && (gl(2) == 5 || gl(2) == 4) {
		return luhn(d)
	}
	for i := range g {
		if l := gl(i); l != 4 && !(i == len(g)-1 && l >= 1 && l <= 4) {
			return false
		}
	}
	return luhn(d)
}

// phoneKR: area or mobile prefix, 3–4 digits, 4 digits (separated by dashes or spaces), or a bare
// mobile number 01X + 7–8 digits (010 always + 8). Bare landline numbers are too ambiguous.
func phoneKR(g []group, d []byte) bool {
	switch len(g) {
	case 3:
		l0, l1, l2 := g[0].end-g[0].start, g[1].end-g[1].start, g[2].end-g[2].start
		return (l0 == 2 || l0 == 3) && (l1 == 3 || l1 == 4) && l2 == 4 && krPrefix(d[:l0])
	case 1:
		if len(d) != 10 && len(d) != 11 || d[0] != '0' || d[1] != '1' {
			return false
		}
		switch d[2] {
		case '0':
			return len(d) == 11
		case '1', '6', '7', '8', '9':
			return true
		}
	}
	return false
}

// --- ipv4, ipv6 --------------------------------------------------------------------------------

// ipv4s finds dotted quads of decimal octets 0–255 without leading zeros, not part of a longer
// dotted or alphanumeric sequence (v1.2.3.4 and 1.2.3.4.5 are versions, not addresses).
func (sc *scanner) ipv4s() {
	n := len(sc.s)
	for i := 0; i < n; i++ {
		if !isDigit(sc.at(i)) || isDigit(sc.at(i-1)) {
			continue
		}
		if c := sc.at(i - 1); isWord(c) || c == '.' {
			continue
		}
		p := i
		ok := true
		for part := 0; part < 4 && ok; part++ {
			if part > 0 {
				if sc.at(p) != '.' {
					ok = false
					break
				}
				p++
			}
			q, v := p, 0
			for isDigit(sc.at(q)) && q-p < 4 {
				v = v*10 + int(sc.at(q)-'0')
				q++
			}
			ok = q > p && q-p <= 3 && v <= 255 && (q-p == 1 || sc.at(p) != '0')
			p = q
		}
		if ok && sc.nextOK(p) {
			sc.add(i, p, kIPv4)
			i = p - 1
		}
	}
}

func isV6(c byte) bool { return isDigit(c) || 'a' <= c|0x20 && c|0x20 <= 'f' || c == ':' || c == '.' }

// ipv6s finds IPv6 addresses: a maximal run of hex digits, ':' and '.' not inside a word, with at
// least two colons and a digit, that net/netip parses as IPv6. A trailing '.' or single ':' (end
// of a sentence, "addr ::1: up") is not part of the address.
func (sc *scanner) ipv6s() {
	n := len(sc.s)
	for i := 0; i < n; {
		c := sc.at(i)
		if !isV6(c) {
			i++
			continue
		}
		j := i + 1
		for isV6(sc.at(j)) {
			j++
		}
		if p := sc.at(i - 1); isWord(p) || isWord(sc.at(j)) {
			i = j
			continue
		}
		t := sc.s[i:j]
		t = strings.TrimRight(t, ".")
		if strings.HasSuffix(t, ":") && !strings.HasSuffix(t, "::") {
			t = t[:len(t)-1]
		}
		if len(t) <= 45 && strings.Count(t, ":") >= 2 && strings.ContainsAny(t, "0123456789") {
			if a, err := netip.ParseAddr(t); err == nil && a.Is6() {
				sc.add(i, i+len(t), kIPv6)
			}
		}
		i = j
	}
}
