// Package mask finds personal data and secrets in text and JSON and replaces them before anything
// leaves the gateway: the prompts and tool arguments of MCP calls, as the source document asks
// ("실시간 민감 정보 필터링": phone numbers, resident registration numbers, e-mail, ...).
//
// A [Masker] is built once from a [Config] and is safe for concurrent use. [Masker.String] masks
// free text; [Masker.JSON] masks the string and number values of a JSON document and keeps it valid
// JSON; [Masker.URI] masks a URI part by part and keeps its shape. All report how many findings of each kind they replaced — never the values — which is
// what [event.Event.PII] carries.
//
// Detectors are hand-written scanners, not one regular expression per kind: every kind is found
// in a few linear passes over the input with no backtracking, so hostile input costs time
// proportional to its length, and inputs longer than [Config.MaxInput] are cut (see
// [KindTruncated]).
//
// Masking is idempotent: masking the output again finds nothing new. Each pass treats what an
// earlier pass already matched as a hard boundary, exactly as a second run sees the replacement's
// brackets, and replacements must begin and end with such a boundary character (see
// [Config.Replacement]).
//
// [event.Event.PII]: github.com/mcpwatch/mcpwatch/event.Event
package mask

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Kinds of findings. The strings are stable: they are the keys of the counts this package returns
// and of the event model's PII map, and they appear in stored events.
const (
	KindPhoneKR      = "phone_kr"       // Korean mobile or landline number: 010-1234-5678, 02-123-4567, 01012345678
	KindRRNKR        = "rrn_kr"         // Korean resident registration number, YYMMDD-GNNNNNN
	KindEmail        = "email"          // e-mail address
	KindPhoneE164    = "phone_e164"     // international number: + and 8–15 digits
	KindCard         = "card"           // payment card number, Luhn-checked
	KindIBAN         = "iban"           // international bank account number, mod-97-checked
	KindIPv4         = "ipv4"           // IPv4 address (off by default)
	KindIPv6         = "ipv6"           // IPv6 address (off by default)
	KindAPIKey       = "api_key"        // API key with a well-known prefix: sk-, ghp_, xoxb-, AIza, ...
	KindBearer       = "bearer"         // credentials after "Bearer" or in an Authorization value
	KindPrivateKey   = "private_key"    // PEM private key block, BEGIN through END
	KindAWSAccessKey = "aws_access_key" // AWS access key id: AKIA/ASIA + 16
	KindAWSSecret    = "aws_secret"     // AWS secret access key, next to an AWS key or keyword
	KindJWT          = "jwt"            // JSON Web Token: eyJ... with three dot-separated segments

	// KindField counts values redacted by a field rule ([ActionMask]) rather than by a detector.
	KindField = "field"
	// KindTruncated counts inputs longer than [Config.MaxInput]: the tail past the cap is not
	// scanned and is replaced, not passed through (failing closed).
	KindTruncated = "truncated"
)

// kind is the internal index of a kind. The order is the tie-break when two overlapping findings
// have the same length: earlier is more specific.
type kind uint8

const (
	kPrivateKey kind = iota
	kJWT
	kBearer
	kAPIKey
	kAWSAccessKey
	kAWSSecret
	kRRN
	kCard
	kIBAN
	kPhoneKR
	kPhoneE164
	kEmail
	kIPv6
	kIPv4
	numDetectors // kinds above are detectors that [Config.Kinds] may name
	kField       = numDetectors
	kTruncated   = numDetectors + 1
	numKinds     = numDetectors + 2
)

var kindNames = [numKinds]string{
	kPrivateKey:   KindPrivateKey,
	kJWT:          KindJWT,
	kBearer:       KindBearer,
	kAPIKey:       KindAPIKey,
	kAWSAccessKey: KindAWSAccessKey,
	kAWSSecret:    KindAWSSecret,
	kRRN:          KindRRNKR,
	kCard:         KindCard,
	kIBAN:         KindIBAN,
	kPhoneKR:      KindPhoneKR,
	kPhoneE164:    KindPhoneE164,
	kEmail:        KindEmail,
	kIPv6:         KindIPv6,
	kIPv4:         KindIPv4,
	kField:        KindField,
	kTruncated:    KindTruncated,
}

// AllKinds returns every detector kind [Config.Kinds] accepts.
func AllKinds() []string { return slices.Clone(kindNames[:numDetectors]) }

// DefaultKinds returns the detectors enabled when [Config.Kinds] is nil: all but IPv4 and IPv6,
// which are too often not personal (server addresses, version strings) to mask by default.
func DefaultKinds() []string {
	var ks []string
	for k := range numDetectors {
		if k != kIPv4 && k != kIPv6 {
			ks = append(ks, kindNames[k])
		}
	}
	return ks
}

// DefaultMaxInput is [Config.MaxInput] when it is zero.
const DefaultMaxInput = 1 << 20

// Action says what [Masker.JSON] does with the value of a field that a field rule names.
type Action string

const (
	// ActionScan runs the detectors over the value: the default for every field.
	ActionScan Action = "scan"
	// ActionMask replaces every string and number in the value, whatever it contains, and counts
	// each as [KindField]. true, false and null are kept.
	ActionMask Action = "mask"
	// ActionKeep passes the value through unscanned.
	ActionKeep Action = "keep"
)

// Config configures a [Masker]. The zero value is usable: default kinds, "[KIND]" replacements,
// [DefaultMaxInput], and secret-looking fields redacted.
type Config struct {
	// Kinds enabled, by name (see [AllKinds]). Nil means [DefaultKinds]; an empty non-nil slice
	// enables no detector (field rules and truncation still apply).
	Kinds []string
	// Replacement returns the text that replaces a finding of the given kind (including
	// [KindField] and [KindTruncated]). Nil means "[" + upper(kind) + "]", e.g. "[EMAIL]", and
	// "[REDACTED]" for [KindField] — the source document likewise replaces with the kind's name.
	// A replacement must be non-empty, begin and end with one of []<>(){}*#!|^ and contain nothing
	// a detector matches; otherwise masking would not be idempotent and [New] refuses it.
	Replacement func(kind string) string
	// MaxInput is the largest input, in bytes, scanned in full. A longer input is cut at the last
	// safe point at most 64 bytes before MaxInput (never inside a word or number, so no partial
	// secret survives the cut), the head is masked, and the rest is replaced by the [KindTruncated]
	// replacement and counted. Zero means [DefaultMaxInput].
	MaxInput int
	// FieldRules decide per JSON field what [Masker.JSON] does (see [Action]). A key starting with
	// "/" is a JSON Pointer (RFC 6901) to a value, where a "*" segment matches any key or index;
	// any other key names a field anywhere in the document, compared case-insensitively. A rule
	// applies to the whole subtree. Pointer rules win over name rules; among pointer rules that
	// match, the one with fewer "*" segments wins, then the first in byte order.
	//
	// Fields whose name looks like a credential — password, passwd, pwd, secret, token,
	// authorization, cookie, api_key, private_key, and names ending in password, secret, token,
	// apikey, privatekey or accesskey (ignoring case, "_", "-" and ".") — are masked unless a rule
	// names them or NoSecretFieldNames is set.
	FieldRules map[string]Action
	// NoSecretFieldNames turns off the masking of fields by their credential-like names, for a
	// Masker meant to find only some kinds (personal data, say) and leave the rest alone.
	NoSecretFieldNames bool
}

// Masker masks personal data and secrets. It is immutable and safe for concurrent use.
type Masker struct {
	on       [numKinds]bool
	noNames  bool // no masking by credential-like field names
	repl     [numKinds]string
	maxInput int
	names    map[string]Action // field-name rules, keys lower-cased
	pointers []pointerRule
}

type pointerRule struct {
	text string
	segs []string
	act  Action
}

func wildcards(segs []string) int {
	n := 0
	for _, s := range segs {
		if s == "*" {
			n++
		}
	}
	return n
}

// hardBoundary lists the bytes a replacement may begin and end with: none of them is part of
// anything a detector matches, so a replacement never joins its neighbours into a new finding.
const hardBoundary = "[]<>(){}*#!|^"

// New validates cfg and returns a Masker. An unknown kind, a negative MaxInput, an invalid field
// rule or an unsafe replacement is an error naming the culprit.
func New(cfg Config) (*Masker, error) {
	m := &Masker{maxInput: cfg.MaxInput, noNames: cfg.NoSecretFieldNames}
	if m.maxInput < 0 {
		return nil, fmt.Errorf("mask: MaxInput %d is negative", cfg.MaxInput)
	}
	if m.maxInput == 0 {
		m.maxInput = DefaultMaxInput
	}
	kinds := cfg.Kinds
	if kinds == nil {
		kinds = DefaultKinds()
	}
	for _, name := range kinds {
		k := slices.Index(kindNames[:numDetectors], name)
		if k < 0 {
			return nil, fmt.Errorf("mask: unknown kind %q (known: %s)", name, strings.Join(AllKinds(), ", "))
		}
		m.on[k] = true
	}
	for name, act := range cfg.FieldRules {
		switch act {
		case ActionScan, ActionMask, ActionKeep:
		default:
			return nil, fmt.Errorf("mask: field rule %q: unknown action %q", name, act)
		}
		if strings.HasPrefix(name, "/") {
			segs, err := parsePointer(name)
			if err != nil {
				return nil, fmt.Errorf("mask: field rule %q: %w", name, err)
			}
			m.pointers = append(m.pointers, pointerRule{text: name, segs: segs, act: act})
			continue
		}
		if name == "" {
			return nil, errors.New("mask: field rule with an empty name")
		}
		if m.names == nil {
			m.names = map[string]Action{}
		}
		m.names[strings.ToLower(name)] = act
	}
	// Deterministic precedence among pointer rules (they come from a map): fewer wildcard
	// segments first, then by the pointer text.
	slices.SortFunc(m.pointers, func(a, b pointerRule) int {
		if wa, wb := wildcards(a.segs), wildcards(b.segs); wa != wb {
			return wa - wb
		}
		return strings.Compare(a.text, b.text)
	})
	for k := range numKinds {
		r := defaultReplacement(kindNames[k])
		if cfg.Replacement != nil {
			r = cfg.Replacement(kindNames[k])
		}
		if r == "" || !strings.ContainsRune(hardBoundary, rune(r[0])) || !strings.ContainsRune(hardBoundary, rune(r[len(r)-1])) {
			return nil, fmt.Errorf("mask: replacement %q for %s must begin and end with one of %s", r, kindNames[k], hardBoundary)
		}
		m.repl[k] = r
	}
	for k := range numKinds {
		var c [numKinds]int
		if m.mask(m.repl[k], &c) != m.repl[k] {
			return nil, fmt.Errorf("mask: replacement %q for %s is itself masked", m.repl[k], kindNames[k])
		}
	}
	return m, nil
}

func defaultReplacement(kind string) string {
	if kind == KindField {
		return "[REDACTED]"
	}
	return "[" + strings.ToUpper(kind) + "]"
}

// String masks s. It returns the masked text and the number of findings replaced per kind, nil
// when there were none.
func (m *Masker) String(s string) (string, map[string]int) {
	var c [numKinds]int
	out := m.capped(s, &c)
	return out, countsMap(&c)
}

// capped masks s, cutting it at MaxInput first.
func (m *Masker) capped(s string, c *[numKinds]int) string {
	if len(s) <= m.maxInput {
		return m.mask(s, c)
	}
	head := m.mask(s[:safeCut(s, m.maxInput)], c)
	c[kTruncated]++
	return head + m.repl[kTruncated]
}

// safeCut returns where to cut s so that s[:cut] is at most limit bytes and ends neither inside a
// UTF-8 sequence nor inside anything a detector could have matched in full. It looks back at most
// 64 bytes for a byte that ends no finding; if there is none it cuts 64 bytes early anyway, so the
// partial token is dropped rather than passed through.
func safeCut(s string, limit int) int {
	const window = 64
	lo := max(0, limit-window)
	for cut := limit; cut > lo; cut-- {
		if !utf8.RuneStart(s[cut]) {
			continue
		}
		if safeEnd(s, cut) {
			return cut
		}
	}
	for lo > 0 && !utf8.RuneStart(s[lo]) {
		lo--
	}
	return lo
}

// safeEnd reports whether s[cut-1] cannot be inside a finding that continues past cut.
func safeEnd(s string, cut int) bool {
	c := s[cut-1]
	switch {
	case c >= 0x80: // inside or at the end of a non-ASCII character: text, not a finding
		return utf8.RuneStart(s[cut])
	case isAlnum(c) || strings.IndexByte("-_.+/=@:%~\\", c) >= 0:
		return false
	case c == ' ' || c == '\t':
		// Spaces separate the groups of card, phone and IBAN numbers and follow "Bearer".
		return cut < 2 || !isAlnum(s[cut-2]) && s[cut-2] != ' '
	}
	return true
}

func countsMap(c *[numKinds]int) map[string]int {
	var out map[string]int
	for k, n := range c {
		if n == 0 {
			continue
		}
		if out == nil {
			out = map[string]int{}
		}
		out[kindNames[k]] = n
	}
	return out
}

// span is one finding: s[start:end] of kind k.
type span struct {
	start, end int
	k          kind
}

// mask runs every enabled detector over s, adds the findings to c and returns s with each finding
// replaced. Overlapping findings (possible only among the numbers of one digit run) are merged into
// one replacement whose kind is that of the longest, ties going to the more specific kind.
func (m *Masker) mask(s string, c *[numKinds]int) string {
	sc := scanner{s: s, on: &m.on}
	sc.run()
	if len(sc.spans) == 0 {
		return s
	}
	spans := sc.spans
	slices.SortFunc(spans, func(a, b span) int {
		if a.start != b.start {
			return a.start - b.start
		}
		return b.end - a.end
	})
	var b strings.Builder
	b.Grow(len(s))
	last := 0
	for i := 0; i < len(spans); {
		start, end, win := spans[i].start, spans[i].end, spans[i]
		j := i + 1
		for ; j < len(spans) && spans[j].start < end; j++ {
			sp := spans[j]
			end = max(end, sp.end)
			if l, wl := sp.end-sp.start, win.end-win.start; l > wl || l == wl && sp.k < win.k {
				win = sp
			}
		}
		b.WriteString(s[last:start])
		b.WriteString(m.repl[win.k])
		c[win.k]++
		last = end
		i = j
	}
	b.WriteString(s[last:])
	return b.String()
}
