package mask

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzMasker enables every kind, IPv4 and IPv6 included, so that the idempotency property covers
// every detector and every interaction between them.
func fuzzMasker(t testing.TB) *Masker {
	m, err := New(Config{Kinds: AllKinds(), MaxInput: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var fuzzSeeds = []string{
	"call 010-1234-5678 or 02-123-4567, rrn 900101-1234567, mail hong.gildong@example.co.kr",
	"card 4111 1111 1111 1111 exp 12/27, amex 3782 822463 10005, 4111111111111111.5",
	"iban DE89 3704 0044 0532 0130 00 and GB82WEST12345698765432",
	"sk-proj-abc123def456ghi789jkl012 ghp_abcdefghijklmnopqrstuvwxyz0123456789 xoxb-1234-abcdefghij",
	"AKIAIOSFODNN7EXAMPLE,wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
	"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.abc_def-ghi",
	"-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY----- after",
	"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
	"ip 10.0.0.1 v1.2.3.4 fe80::1 ::ffff:1.2.3.4 +82 10-1234-5678 +1 415 555 2671",
	"a@b.com@c.com x.y@z.co.kr-1 01012345678 9001011234568",
	`{"arguments":{"email":"kim@example.com","phone":"010-1234-5678","card":4111111111111111,"password":"hunter2"}}`,
}

// FuzzString: String never panics, and masking is idempotent — masking the output again finds
// nothing and changes nothing. If it failed, some replacement would leave or create text that a
// detector matches: a partial secret or a context the first run did not see.
func FuzzString(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	m := fuzzMasker(f)
	f.Fuzz(func(t *testing.T, s string) {
		out, counts := m.String(s)
		if (out != s) != (len(counts) > 0) {
			t.Fatalf("String(%q) = %q with counts %v: output changed iff something counted", s, out, counts)
		}
		out2, counts2 := m.String(out)
		if len(counts2) != 0 || out2 != out {
			t.Fatalf("not idempotent:\n in   %q\n out  %q %v\n out2 %q %v", s, out, counts, out2, counts2)
		}
		if utf8.ValidString(s) && !utf8.ValidString(out) {
			t.Fatalf("valid UTF-8 in, invalid out: %q", out)
		}
	})
}

// FuzzJSON: JSON never panics, accepts exactly what json.Valid accepts, returns valid JSON, and is
// idempotent except for field-rule redactions, which a second run redacts (and counts) again.
func FuzzJSON(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
		b, _ := json.Marshal(map[string]any{"text": s, "n": []any{4111111111111111, 1.5, nil, true}})
		f.Add(b)
	}
	m := fuzzMasker(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, counts, err := m.JSON(raw)
		if valid := json.Valid(raw); valid != (err == nil) {
			t.Fatalf("JSON(%q): err %v but json.Valid %v", raw, err, valid)
		}
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("JSON(%q) = %q: invalid JSON out", raw, out)
		}
		out2, counts2, err := m.JSON(out)
		if err != nil {
			t.Fatal(err)
		}
		delete(counts2, KindField)
		if len(counts2) != 0 || string(out2) != string(out) {
			t.Fatalf("not idempotent:\n in   %q\n out  %q %v\n out2 %q %v", raw, out, counts, out2, counts2)
		}
		for k := range counts {
			if !strings.Contains(strings.Join(AllKinds(), " ")+" field", k) {
				t.Fatalf("unknown kind %q counted", k)
			}
		}
	})
}
