package mask

import (
	"maps"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestURI: resource URIs reach events, and from there Kafka, ClickHouse, CEF and the SIEM. If it
// failed, a token in a query string, the password of user information or the e-mail address in a
// path would be recorded as sent, or a URI would lose the scheme, host and path shape analysts
// group resources by.
func TestURI(t *testing.T) {
	m, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		in, want string
		counts   map[string]int
	}{
		{"file:///etc/passwd", "file:///etc/passwd", nil},
		{"https://api.example.com/v1/items?access_token=abc&limit=10",
			"https://api.example.com/v1/items?access_token=[REDACTED]&limit=10", map[string]int{KindField: 1}},
		{"https://x.example/?TOKEN=a&Api-Key=b&password=c&secret=d&sig=e&code=f&key=g&X-Amz-Signature=h&client_secret=i",
			"https://x.example/?TOKEN=[REDACTED]&Api-Key=[REDACTED]&password=[REDACTED]&secret=[REDACTED]&sig=[REDACTED]&code=[REDACTED]&key=[REDACTED]&X-Amz-Signature=[REDACTED]&client_secret=[REDACTED]",
			map[string]int{KindField: 9}},
		{"mailto:alice@example.com", "mailto:[EMAIL]", map[string]int{KindEmail: 1}},
		{"file:///customers/alice@example.com/x", "file:///customers/[EMAIL]/x", map[string]int{KindEmail: 1}},
		{"https://u:p@host/x", "https://host/x", map[string]int{KindField: 1}},
		{"ftp://alice@files.example.com:2121/pub", "ftp://files.example.com:2121/pub", map[string]int{KindField: 1}},
		{"db://sales/customers?email=bob%40example.com&sort=name", "db://sales/customers?email=[EMAIL]&sort=name",
			map[string]int{KindEmail: 1}},
		{"crm://contacts/010-1234-5678/notes", "crm://contacts/[PHONE_KR]/notes", map[string]int{KindPhoneKR: 1}},
		{"hr://employees/900101-1234568", "hr://employees/[RRN_KR]", map[string]int{KindRRNKR: 1}},
		{"pay://cards/4111111111111111/charges", "pay://cards/[CARD]/charges", map[string]int{KindCard: 1}},
		{"https://host/a;jsessionid=XYZ/b", "https://host/a;jsessionid=[REDACTED]/b", map[string]int{KindField: 1}},
		{"https://app.example/cb#access_token=t0k&state=s", "https://app.example/cb#access_token=[REDACTED]&state=s",
			map[string]int{KindField: 1}},
		{"note://inbox/call me at 010-1234-5678", "note://inbox/call%20me%20at%20[PHONE_KR]", map[string]int{KindPhoneKR: 1}},
		{"https://x/?token=&q=1", "https://x/?token=&q=1", nil}, // nothing to hide
		{"/mcp/alice@example.com", "/mcp/[EMAIL]", map[string]int{KindEmail: 1}},
		{"users://{id}/profile", "users://{id}/profile", nil},
	}
	for _, tc := range cases {
		got, counts := m.URI(tc.in)
		if got != tc.want || !maps.Equal(counts, tc.counts) {
			t.Errorf("URI(%q)\n got  %q %v\n want %q %v", tc.in, got, counts, tc.want, tc.counts)
		}
	}
}

// TestURIFieldRules: the masker's configuration applies to URIs as to JSON: field rules name
// query parameters too, and NoSecretFieldNames turns the credential heuristic off. If it failed,
// an operator's "keep" or "mask" for a field would not hold for the same name in a URI.
func TestURIFieldRules(t *testing.T) {
	m, err := New(Config{FieldRules: map[string]Action{"customer": ActionMask, "token": ActionKeep}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := m.URI("crm://x?Customer=ACME&token=t1&access_token=t2")
	if want := "crm://x?Customer=[REDACTED]&token=t1&access_token=[REDACTED]"; got != want {
		t.Errorf("field rules: %q, want %q", got, want)
	}
	m, err = New(Config{NoSecretFieldNames: true})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = m.URI("crm://x?access_token=t2&mail=a@example.com")
	if want := "crm://x?access_token=t2&mail=[EMAIL]"; got != want {
		t.Errorf("no secret names: %q, want %q", got, want)
	}
}

// TestURITruncate: an over-long URI is cut, its head masked and the rest replaced, as with
// String. If it failed, the tail of a huge URI would go unscanned into the event.
func TestURITruncate(t *testing.T) {
	m, err := New(Config{MaxInput: 64})
	if err != nil {
		t.Fatal(err)
	}
	got, counts := m.URI("https://host/" + strings.Repeat("a", 80) + "/alice@example.com")
	if strings.Contains(got, "alice") || counts[KindTruncated] != 1 || !strings.HasSuffix(got, "[TRUNCATED]") {
		t.Errorf("got %q %v", got, counts)
	}
}

var uriSeeds = []string{
	"https://api.example.com/v1/items?access_token=abc&limit=10",
	"mailto:alice@example.com?subject=hi%20there",
	"file:///customers/alice@example.com/x;v=1",
	"https://u:p@host:8443/x#frag",
	"https://a@b@host/p?q=010-1234-5678&k&=v&&#access_token=x&y",
	"db://sales/customers?email=bob%40example.com&card=4111%201111%201111%201111",
	"%zz%4/%41%%2F?%3D=%26#%23",
	"urn:isbn:0451450523", "//host", "?", "#", ":", "a:b:c", "/", "",
	"note://x/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.abc_def-ghi?Authorization=Bearer%20abc",
}

// FuzzURI: URI never panics, is idempotent (masking the output again changes and counts nothing),
// keeps valid UTF-8 valid, never leaves user information in the authority, and keeps the scheme of
// a URI whose scheme it found nothing in. If it failed, a masked URI could still carry what a
// second look finds, or lose the shape it is grouped by.
func FuzzURI(f *testing.F) {
	for _, s := range append(uriSeeds, fuzzSeeds...) {
		f.Add(s)
	}
	m := fuzzMasker(f)
	f.Fuzz(func(t *testing.T, s string) {
		out, counts := m.URI(s)
		out2, counts2 := m.URI(out)
		if len(counts2) != 0 || out2 != out {
			t.Fatalf("not idempotent:\n in   %q\n out  %q %v\n out2 %q %v", s, out, counts, out2, counts2)
		}
		if (out != s) != (len(counts) > 0) {
			t.Fatalf("URI(%q) = %q with counts %v: output changed iff something counted", s, out, counts)
		}
		if utf8.ValidString(s) && !utf8.ValidString(out) {
			t.Fatalf("valid UTF-8 in, invalid out: %q", out)
		}
		if u, err := url.Parse(out); err == nil && u.User != nil {
			t.Fatalf("URI(%q) = %q keeps user information", s, out)
		}
		if i := schemeEnd(s); i > 0 && strings.HasPrefix(out, s[:i+1]) != (m.mask(s[:i], new([numKinds]int)) == s[:i]) {
			t.Fatalf("URI(%q) = %q: scheme not kept", s, out)
		}
	})
}
