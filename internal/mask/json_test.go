package mask

import (
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
)

// TestJSON checks masked documents byte for byte: values masked in place, structure, keys and
// unmasked numbers kept exactly, masked numbers turned into strings, field rules applied.
func TestJSON(t *testing.T) {
	m := newMasker(t, Config{FieldRules: map[string]Action{
		"patient_name":         ActionMask, // a name rule, any depth, any case
		"/params/meta":         ActionKeep, // a pointer rule on a subtree
		"/params/items/*/note": ActionMask, // wildcard over array indices
		"session_token":        ActionScan, // overrides the credential heuristic
	}})
	cases := []struct {
		name, in, want string
		counts         map[string]int
	}{
		{"values masked, keys kept",
			`{"a@b.com": "mail a@b.com", "n": [1, 2.50, -3e+2, 4111111111111111], "ok": true, "z": null}`,
			`{"a@b.com":"mail [EMAIL]","n":[1,2.50,-3e+2,"[CARD]"],"ok":true,"z":null}`,
			map[string]int{KindEmail: 1, KindCard: 1}},
		{"credential names masked by default, whole subtree",
			`{"Password": "hunter2", "api-key": 12345, "auth": {"user": "u", "pass": ["p", false]}, "max_tokens": 100}`,
			`{"Password":"[REDACTED]","api-key":"[REDACTED]","auth":{"user":"[REDACTED]","pass":["[REDACTED]",false]},"max_tokens":100}`,
			map[string]int{KindField: 4}},
		{"field rules",
			`{"params": {"PATIENT_NAME": "홍길동", "meta": {"email": "a@b.com"}, "items": [{"note": "x", "id": 7}, {"note": 5}], "session_token": "abc"}}`,
			`{"params":{"PATIENT_NAME":"[REDACTED]","meta":{"email":"a@b.com"},"items":[{"note":"[REDACTED]","id":7},{"note":"[REDACTED]"}],"session_token":"abc"}}`,
			map[string]int{KindField: 3}},
		{"escapes decoded before scanning, re-encoded after",
			`["kim\u0040example.com", "line\nbreak \"q\" <b>", "\ud83d\ude00"]`,
			`["[EMAIL]","line\nbreak \"q\" <b>","😀"]`,
			map[string]int{KindEmail: 1}},
		{"scalar document", `"010-1234-5678"`, `"[PHONE_KR]"`, map[string]int{KindPhoneKR: 1}},
		{"empty containers", ` { "a" : [ ] , "b" : { } } `, `{"a":[],"b":{}}`, nil},
	}
	for _, tc := range cases {
		out, counts, err := m.JSON([]byte(tc.in))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if string(out) != tc.want || !maps.Equal(counts, tc.counts) {
			t.Errorf("%s:\n got  %s %v\n want %s %v", tc.name, out, counts, tc.want, tc.counts)
		}
		if !json.Valid(out) {
			t.Errorf("%s: invalid JSON out", tc.name)
		}
	}
}

// TestJSONInvalid: anything but one JSON value is refused with ErrInvalidJSON and no output.
func TestJSONInvalid(t *testing.T) {
	m := newMasker(t, Config{})
	for _, in := range []string{``, `{`, `{"a":1}{}`, `{"a" 1}`, `[1,]`, `{"a":"a@b.com"} x`, strings.Repeat("[", 10001) + strings.Repeat("]", 10001)} {
		out, counts, err := m.JSON([]byte(in))
		if !errors.Is(err, ErrInvalidJSON) || out != nil || counts != nil {
			t.Errorf("JSON(%.40q) = %q %v %v, want ErrInvalidJSON", in, out, counts, err)
		}
	}
}

// TestJSONTooLarge: a document over MaxInput becomes a JSON string of the masked, cut raw text.
func TestJSONTooLarge(t *testing.T) {
	m := newMasker(t, Config{MaxInput: 200})
	in := `{"email":"a@b.com","pad":"` + strings.Repeat("x", 300) + `","card":"4111111111111111"}`
	out, counts, err := m.JSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var s string
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("output %q is not a JSON string: %v", out, err)
	}
	if !strings.HasPrefix(s, `{"email":"[EMAIL]","pad":"xxx`) || !strings.HasSuffix(s, "[TRUNCATED]") || strings.Contains(s, "4111") {
		t.Errorf("got %q", s)
	}
	if want := map[string]int{KindEmail: 1, KindTruncated: 1}; !maps.Equal(counts, want) {
		t.Errorf("counts %v, want %v", counts, want)
	}
}

func TestSecretName(t *testing.T) {
	for name, want := range map[string]bool{
		"password": true, "DB_PASSWORD": true, "client-secret": true, "access_token": true,
		"Authorization": true, "x-api-key": true, "aws_secret_access_key": true, "privateKey": true,
		"cookie": true, "max_tokens": false, "username": false, "tokens": false, "secretary": false,
		"passport": false, "": false,
	} {
		if got := secretName(name); got != want {
			t.Errorf("secretName(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestAppendString: the JSON string encoder round-trips through encoding/json, including control
// bytes, invalid UTF-8 (as U+FFFD) and the line separators JavaScript chokes on.
func TestAppendString(t *testing.T) {
	for s, want := range map[string]string{
		"":                    "",
		"plain":               "plain",
		"\x00\x1f\"\\/\n\r\t": "\x00\x1f\"\\/\n\r\t",
		"bad \xff\xfe utf8":   "bad \uFFFD\uFFFD utf8",
		"\u2028\u2029":        "\u2028\u2029",
		"한국어 😀":               "한국어 😀",
	} {
		b := appendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil || got != want {
			t.Errorf("appendString(%q) = %s, decodes to %q (%v), want %q", s, b, got, err, want)
		}
		if strings.Contains(string(b), "\u2028") {
			t.Errorf("unescaped U+2028 in %s", b)
		}
	}
}

// TestPointerPrecedence: rules come from a map, yet the same rule always wins — the one with fewer
// wildcards, then the first by pointer text. Were it random, the same document could be masked
// one run and kept the next.
func TestPointerPrecedence(t *testing.T) {
	for range 20 {
		m := newMasker(t, Config{FieldRules: map[string]Action{
			"/a/*": ActionKeep, "/*/b": ActionMask, "/a/c": ActionKeep, "/*/c": ActionMask,
		}})
		out, _, err := m.JSON([]byte(`{"a":{"b":"x@y.com","c":"x@y.com","d":"x@y.com"}}`))
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"a":{"b":"[REDACTED]","c":"x@y.com","d":"x@y.com"}}`; string(out) != want {
			t.Fatalf("got %s, want %s", out, want)
		}
	}
}

// TestNoSecretFieldNames: a masker limited to personal data leaves credential-named fields alone
// (and still finds personal data in them). Were the heuristic always on, redacting only "pii"
// from tool results would also blank every "token" or "password" field.
func TestNoSecretFieldNames(t *testing.T) {
	m := newMasker(t, Config{Kinds: []string{KindEmail}, NoSecretFieldNames: true})
	out, counts, err := m.JSON([]byte(`{"password":"hunter2","token":"kim@example.com","n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"password":"hunter2","token":"[EMAIL]","n":1}`; string(out) != want || !maps.Equal(counts, map[string]int{KindEmail: 1}) {
		t.Fatalf("got %s %v, want %s", out, counts, want)
	}
}
