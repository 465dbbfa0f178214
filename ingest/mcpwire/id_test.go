package mcpwire

import (
	"encoding/json"
	"math/big"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// TestCanonicalID: the canonical form is what pairs a response with its request and what events
// record as the request id. If it failed, a server that re-encodes ids (1.0 as 1, "\u0061" as
// "a") would leave its answers unpaired, or two distinct ids would pair with each other's answers.
func TestCanonicalID(t *testing.T) {
	cases := []struct{ in, want string }{
		{`1`, `1`}, {`1.0`, `1`}, {`1e0`, `1`}, {`1E+0`, `1`}, {`10e-1`, `1`}, {`0.1e1`, `1`},
		{`100`, `100`}, {`1e2`, `100`}, {`0`, `0`}, {`-0`, `0`}, {`-0.0e-5`, `0`}, {`0e99999999999999999999`, `0`},
		{`-1.50`, `-1.5`}, {`0.001`, `0.001`}, {`1e-3`, `0.001`}, {`-42`, `-42`},
		{`9007199254740993`, `9007199254740993`}, {`9007199254740993.0`, `9007199254740993`},
		{`18446744073709551616`, `18446744073709551616`},
		{`1e21`, `1000000000000000000000`}, {`1e22`, `1e22`}, {`1e400`, `1e400`}, {`-15e-400`, `-15e-400`},
		{`1e-22`, `0.0000000000000000000001`}, {`1e-23`, `1e-23`}, {`12.5e-30`, `125e-31`},
		{`1e99999999999999999999`, `1e99999999999999999999`},
		{" 7 \n", `7`},
		{`"a"`, `"a"`}, {`"\u0061"`, `"a"`}, {`"\/"`, `"/"`}, {`""`, `""`},
		{`"é"`, `"é"`}, {`"\u00e9"`, `"é"`}, {`"\u00E9"`, `"é"`},
		{`"<&>"`, `"<&>"`}, {`"\u003c"`, `"<"`},
		{`"\ud83d\ude00"`, `"😀"`}, {`"\uD800"`, `"\ud800"`}, {`"\ud800\u0061"`, `"\ud800a"`},
		{`"\udc00\ud800"`, `"\udc00\ud800"`}, {`"\ud800\ud800\udc00"`, `"\ud800𐀀"`},
		{`"\n\u0001\u001F"`, `"\n\u0001\u001f"`}, {`"\u0008\u000c"`, `"\b\f"`}, {`"a\"b\\c"`, `"a\"b\\c"`},
		{`"\u2028"`, "\"\u2028\""},
		{`null`, `null`},
	}
	for _, tc := range cases {
		got, err := CanonicalID([]byte(tc.in))
		if err != nil || got != tc.want {
			t.Errorf("CanonicalID(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{`true`, `{}`, `[]`, `01`, `1.`, `.5`, `+1`, `1e`, `1e+`, `-`, `"abc`, `"\x"`,
		`"\u12"`, `"\u12g4"`, "\"a\x01\"", "\"\xff\"", `nul`, ``, `1 2`, `"` + strings.Repeat("a", MaxIDLen) + `"`} {
		if got, err := CanonicalID([]byte(in)); err == nil || err.Code != CodeInvalidRequest {
			t.Errorf("CanonicalID(%q) = %q, %v; want refused", in, got, err)
		}
	}
}

// pairingCase is one case of testdata/pairing.json, which the gateway (ingest/mcp) and the
// sandbox bridge (ingest/sandbox) drive through their own pairing too: each request id is sent
// (all pending at once), then each response id answers; Want[i] is the index of the request the
// i-th response pairs with, -1 for none. Ids are JSON text as written.
type pairingCase struct {
	Name      string
	Requests  []json.RawMessage
	Responses []json.RawMessage
	Want      []int
}

// TestPairingGolden checks testdata/pairing.json against [CanonicalID], the definition both the
// gateway and the bridge must follow. If it failed, the golden file and the canonical form would
// disagree, and so would the sources tested against it.
func TestPairingGolden(t *testing.T) {
	b, err := os.ReadFile("testdata/pairing.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []pairingCase
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		pending := map[string]int{}
		for i, id := range tc.Requests {
			k, err := CanonicalID(id)
			if err != nil {
				t.Fatalf("%s: request %s: %v", tc.Name, id, err)
			}
			if _, dup := pending[k]; dup {
				t.Fatalf("%s: requests must be distinct ids, %s is not", tc.Name, id)
			}
			pending[k] = i
		}
		got := make([]int, len(tc.Responses))
		for i, id := range tc.Responses {
			k, _ := CanonicalID(id)
			got[i] = -1
			if r, ok := pending[k]; ok {
				got[i] = r
				delete(pending, k)
			}
		}
		if !slices.Equal(got, tc.Want) {
			t.Errorf("%s: paired %v, want %v", tc.Name, got, tc.Want)
		}
	}
}

// FuzzCanonicalID: the canonical form never panics, is idempotent, is valid JSON of the same
// type, and maps two ids to one form exactly when they are the same JSON value (numbers by exact
// value, strings by their UTF-16 code units, lone surrogates included). If it failed, a re-encoded
// id could miss its request, or one request could take another's answer.
func FuzzCanonicalID(f *testing.F) {
	seeds := [][2]string{
		{`1`, `1.0`}, {`1e2`, `100`}, {`-0`, `0`}, {`9007199254740993`, `9007199254740992`}, {`1`, `"1"`},
		{`"\u0061"`, `"a"`}, {`"\ud800"`, `"\ufffd"`}, {`"\ud83d\ude00"`, `"😀"`}, {`null`, `"null"`},
		{`0.5`, `5e-1`}, {`1e400`, `10e399`}, {`"<"`, `"\u003c"`}, {`12.5e-30`, `125e-31`},
	}
	for _, s := range seeds {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		ca, erra := CanonicalID(a)
		cb, errb := CanonicalID(b)
		for _, c := range []struct {
			raw   []byte
			canon string
			err   *Error
		}{{a, ca, erra}, {b, cb, errb}} {
			if c.err != nil {
				continue
			}
			if again, err := CanonicalID([]byte(c.canon)); err != nil || again != c.canon {
				t.Fatalf("not idempotent: %q -> %q -> %q, %v", c.raw, c.canon, again, err)
			}
			if !json.Valid([]byte(c.canon)) || !utf8.ValidString(c.canon) {
				t.Fatalf("%q -> %q: not valid JSON", c.raw, c.canon)
			}
			if len(c.canon) > MaxIDLen+maxPadding+2 {
				t.Fatalf("%q -> %q: %d bytes", c.raw, c.canon, len(c.canon))
			}
			if !json.Valid(c.raw) {
				t.Fatalf("accepted invalid JSON %q", c.raw)
			}
		}
		if erra != nil || errb != nil {
			return
		}
		same, known := sameValue(a, b)
		if known && same != (ca == cb) {
			t.Fatalf("%q and %q: same value %v, canonical %q and %q", a, b, same, ca, cb)
		}
	})
}

// sameValue is the reference equality of two JSON ids: numbers by exact rational value, strings
// by UTF-16 code units. known is false for numbers whose exponents are too large to compare
// cheaply this way.
func sameValue(a, b []byte) (same, known bool) {
	a, b = trimJSONSpace(a), trimJSONSpace(b)
	kind := func(x []byte) byte {
		if x[0] == '"' || x[0] == 'n' {
			return x[0]
		}
		return '0'
	}
	if kind(a) != kind(b) {
		return false, true
	}
	switch kind(a) {
	case 'n':
		return true, true
	case '"':
		return slices.Equal(utf16Units(a), utf16Units(b)), true
	}
	ra, oka := smallRat(a)
	rb, okb := smallRat(b)
	if !oka || !okb {
		return false, false
	}
	return ra.Cmp(rb) == 0, true
}

// smallRat parses a JSON number exactly, refusing exponents beyond ±10000.
func smallRat(x []byte) (*big.Rat, bool) {
	s := strings.ToLower(string(x))
	if i := strings.IndexByte(s, 'e'); i >= 0 {
		if e, err := strconv.Atoi(s[i+1:]); err != nil || e > 10000 || e < -10000 {
			return nil, false
		}
	}
	r, ok := new(big.Rat).SetString(s)
	return r, ok
}

// utf16Units decodes a valid JSON string literal into UTF-16 code units, keeping lone
// surrogates, independently of the code under test.
func utf16Units(x []byte) []uint16 {
	s := string(x[1 : len(x)-1])
	var out []uint16
	for i := 0; i < len(s); {
		if s[i] != '\\' {
			r, n := utf8.DecodeRuneInString(s[i:])
			out = append(out, utf16.Encode([]rune{r})...)
			i += n
			continue
		}
		if s[i+1] == 'u' {
			v, _ := strconv.ParseUint(s[i+2:i+6], 16, 16)
			out = append(out, uint16(v))
			i += 6
			continue
		}
		out = append(out, uint16(map[byte]rune{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}[s[i+1]]))
		i += 2
	}
	return out
}
