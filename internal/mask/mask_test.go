package mask

import (
	"maps"
	"strings"
	"testing"
)

func newMasker(t testing.TB, cfg Config) *Masker {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type stringCase struct {
	in, want string
}

// kindCases holds, per kind, inputs with the exact masked output expected from a masker with every
// kind enabled: true positives in their usual spellings and near misses that must stay untouched.
// A failure means a detector either leaks a value or masks something that is not one.
var kindCases = map[string][]stringCase{
	KindPhoneKR: {
		{"tel 010-1234-5678.", "tel [PHONE_KR]."},
		{"02-123-4567", "[PHONE_KR]"},
		{"서울 02-1234-5678 부산 051-123-4567", "서울 [PHONE_KR] 부산 [PHONE_KR]"},
		{"010 1234 5678", "[PHONE_KR]"},
		{"전화번호01012345678로", "전화번호[PHONE_KR]로"},
		{"0161234567", "[PHONE_KR]"},
		{"0101234567", "0101234567"},       // 010 numbers have 8 digits after the prefix
		{"0212345678", "0212345678"},       // bare landline: ambiguous, kept
		{"025-123-4567", "025-123-4567"},   // no such area code
		{"123-456-7890", "123-456-7890"},   // US-style, no leading 0
		{"02-1234-56789", "02-1234-56789"}, // last group too long
		{"A010-1234-5678", "A010-1234-5678"},
		{"2024-01-15", "2024-01-15"},
	},
	KindRRNKR: {
		{"주민번호 900101-1234567", "주민번호 [RRN_KR]"},
		{"000229-3234567", "[RRN_KR]"},         // 2000-02-29, gender digit 3 = born 2000s
		{"9001011234568", "[RRN_KR]"},          // bare, check digit valid
		{"9001011234567", "9001011234567"},     // bare, check digit wrong
		{"901301-1234567", "901301-1234567"},   // month 13
		{"900230-2234567", "900230-2234567"},   // 30 February
		{"010229-3234567", "010229-3234567"},   // 2001 is no leap year
		{"900101-9234567", "900101-9234567"},   // gender digit 9 (1800s) not accepted
		{"900101-12345678", "900101-12345678"}, // too long
		{"order 900101-1234567X", "order 900101-1234567X"},
	},
	KindEmail: {
		{"mail hong@example.com now", "mail [EMAIL] now"},
		{"<kim.minsu+tag@mail.co.kr>", "<[EMAIL]>"},
		{"a@b.com@c.com", "[EMAIL]@c.com"},
		{"x@host.com-1", "[EMAIL]-1"},
		{"user@localhost", "user@localhost"},
		{"a@b.c", "a@b.c"},
		{"foo@bar.123", "foo@bar.123"},
		{"@example.com", "@example.com"},
	},
	KindPhoneE164: {
		{"+82 10-1234-5678", "[PHONE_E164]"},
		{"call +14155552671.", "call [PHONE_E164]."},
		{"+1 415 555 2671 ext", "[PHONE_E164] ext"},
		{"+1234567", "+1234567"},                   // 7 digits
		{"+1234567890123456", "+1234567890123456"}, // 16 digits
	},
	KindCard: {
		{"card 4111 1111 1111 1111 exp", "card [CARD] exp"},
		{"4111-1111-1111-1111", "[CARD]"},
		{"5555555555554444", "[CARD]"},
		{"amex 3782 822463 10005", "amex [CARD]"},
		{"6304 0000 0000 0000 018", "[CARD]"},          // 19 digits, 4-4-4-4-3
		{"4111111111111112", "4111111111111112"},       // Luhn fails
		{"0000000000000000", "0000000000000000"},       // leading 0
		{"ORD-20240115-000123", "ORD-20240115-000123"}, // 14 digits, not grouped like a card
		{"pi 3.4111111111111111", "pi 3.4111111111111111"},
		{"id4111111111111111", "id4111111111111111"},
		{"4111111111111111.5", "4111111111111111.5"},
	},
	KindIBAN: {
		{"DE89 3704 0044 0532 0130 00", "[IBAN]"},
		{"to GB82WEST12345698765432.", "to [IBAN]."},
		{"FR1420041010050500013M02606", "[IBAN]"},
		{"GB82WEST12345698765433", "GB82WEST12345698765433"}, // mod 97 fails
		// mod 97 fails, but its digits are grouped like a card and pass Luhn: masked as a card.
		{"DE89 3704 0044 0532 0130 01", "DE89 [CARD]"},
		{"GB82WEST1234569876543", "GB82WEST1234569876543"},     // one short
		{"GB82WEST123456987654321", "GB82WEST123456987654321"}, // one long
		{"XX82WEST12345698765432", "XX82WEST12345698765432"},   // no such country
	},
	KindIPv4: {
		{"from 10.0.0.1:443", "from [IPV4]:443"},
		{"192.168.1.254/24", "[IPV4]/24"},
		{"v1.2.3.4", "v1.2.3.4"},
		{"1.2.3.4.5", "1.2.3.4.5"},
		{"256.1.1.1", "256.1.1.1"},
		{"01.2.3.4", "01.2.3.4"},
	},
	KindIPv6: {
		{"addr 2001:db8::1 up", "addr [IPV6] up"},
		{"[fe80::1ff:fe23:4567:890a]:80", "[[IPV6]]:80"},
		{"at ::1.", "at [IPV6]."},
		{"12:34:56", "12:34:56"},
		{"std::vector", "std::vector"},
		{"Abc::Def", "Abc::Def"}, // parses, but has no digit
	},
	KindAPIKey: {
		{"OPENAI_API_KEY=sk-proj-abc123def456ghi789jkl012", "OPENAI_API_KEY=[API_KEY]"},
		{"ghp_abcdefghijklmnopqrstuvwxyz0123456789", "[API_KEY]"},
		{"xoxb-123456789012-abcdefghij", "[API_KEY]"},
		{"key=AIzaSyA1234567890abcdefghijklmnopqrstuv&", "key=[API_KEY]&"},
		{"github_pat_11ABCDEFG0123456789_abcdefghijkl", "[API_KEY]"},
		{"sk_live_4eC39HqLyjWDarjtT1zdp7dc", "[API_KEY]"},
		{"sk-learn-is-a-library-name-here", "sk-learn-is-a-library-name-here"}, // no digit
		{"ghp_short1", "ghp_short1"},
		{"task-1234567890abcdefghijklmnop", "task-1234567890abcdefghijklmnop"},
		{"xsk-proj-abc123def456ghi789jkl012", "xsk-proj-abc123def456ghi789jkl012"},
	},
	KindAWSAccessKey: {
		{"id=AKIAIOSFODNN7EXAMPLE;", "id=[AWS_ACCESS_KEY];"},
		{"ASIAY34FZKBOKMUTVV7A", "[AWS_ACCESS_KEY]"},
		{"AKIAIOSFODNN7EXAMPL", "AKIAIOSFODNN7EXAMPL"},
		{"AKIAiosfodnn7example", "AKIAiosfodnn7example"},
	},
	KindAWSSecret: {
		{"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_access_key = [AWS_SECRET]"},
		{`"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"`, `"SecretAccessKey": "[AWS_SECRET]"`},
		{"AKIAIOSFODNN7EXAMPLE,wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "[AWS_ACCESS_KEY],[AWS_SECRET]"},
		{"blob wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "blob wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
		{"aws_secret_access_key = short/K7MDENG", "aws_secret_access_key = short/K7MDENG"},
	},
	KindBearer: {
		{"Authorization: Bearer abc123def456", "Authorization: [BEARER]"},
		{`{"authorization": "Basic dXNlcjpwYXNz"}`, `{"authorization": "[BEARER]"}`},
		{"Proxy-Authorization: token ghp_abc", "Proxy-Authorization: [BEARER]"},
		{"curl -H 'bearer mF_9.B5f-4.1JqM'", "curl -H 'bearer [BEARER]'"},
		{"use a Bearer token", "use a Bearer token"},
		{"Bearer authentication", "Bearer authentication"},
		{"grant_type=authorization_code", "grant_type=authorization_code"},
	},
	KindPrivateKey: {
		{"k=-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAKC==\n-----END RSA PRIVATE KEY-----\nnext", "k=[PRIVATE_KEY]\nnext"},
		{"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1r\\n-----END OPENSSH PRIVATE KEY-----", "[PRIVATE_KEY]"},
		{`"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN" cut`, `"[PRIVATE_KEY]" cut`}, // truncated: to the end of the base64
		{"-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----", "[PRIVATE_KEY]"},
		{"-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----", "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----"},
		{"-----BEGIN CERTIFICATE-----", "-----BEGIN CERTIFICATE-----"},
	},
	KindJWT: {
		{"token=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U&x", "token=[JWT]&x"},
		{"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0. unsigned", "[JWT] unsigned"},
		{"eyJhbGciOiJIUzI1NiJ9 alone", "eyJhbGciOiJIUzI1NiJ9 alone"},
		{"eyJhbGciOiJIUzI1NiJ9.x.y", "eyJhbGciOiJIUzI1NiJ9.x.y"},
		{"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0"},
	},
}

// TestKinds runs every kind's cases and checks the output and that every replacement is counted
// under its kind, once.
func TestKinds(t *testing.T) {
	m := newMasker(t, Config{Kinds: AllKinds()})
	for _, k := range AllKinds() {
		if len(kindCases[k]) == 0 {
			t.Errorf("no cases for kind %s", k)
		}
	}
	for k, cases := range kindCases {
		for _, tc := range cases {
			got, counts := m.String(tc.in)
			if got != tc.want {
				t.Errorf("%s: String(%q) = %q, want %q", k, tc.in, got, tc.want)
				continue
			}
			want := map[string]int(nil)
			for _, k := range AllKinds() {
				if n := strings.Count(tc.want, "["+strings.ToUpper(k)+"]"); n > 0 {
					if want == nil {
						want = map[string]int{}
					}
					want[k] = n
				}
			}
			if !maps.Equal(counts, want) {
				t.Errorf("%s: String(%q) counts %v, want %v", k, tc.in, counts, want)
			}
		}
	}
}

// TestSourceExample is the source document's sanitize_context example, with its replacement
// names: the three patterns it lists must be masked in a prompt.
func TestSourceExample(t *testing.T) {
	names := map[string]string{KindPhoneKR: "[PHONE]", KindRRNKR: "[SSN]", KindEmail: "[EMAIL]"}
	m := newMasker(t, Config{Replacement: func(k string) string {
		if r, ok := names[k]; ok {
			return r
		}
		return defaultReplacement(k)
	}})
	in := "고객 홍길동(010-1234-5678, 900101-1234567, hong@example.com)의 주문 내역을 조회해줘"
	want := "고객 홍길동([PHONE], [SSN], [EMAIL])의 주문 내역을 조회해줘"
	got, counts := m.String(in)
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if wantC := map[string]int{KindPhoneKR: 1, KindRRNKR: 1, KindEmail: 1}; !maps.Equal(counts, wantC) {
		t.Errorf("counts %v, want %v", counts, wantC)
	}
}

// TestDefaultKindsSkipIPs: IP addresses pass by default and are masked only when enabled.
func TestDefaultKindsSkipIPs(t *testing.T) {
	in := "from 10.0.0.1 and 2001:db8::1 mail a@b.com"
	got, _ := newMasker(t, Config{}).String(in)
	if want := "from 10.0.0.1 and 2001:db8::1 mail [EMAIL]"; got != want {
		t.Errorf("default: %q, want %q", got, want)
	}
	got, _ = newMasker(t, Config{Kinds: []string{KindIPv4}}).String(in)
	if want := "from [IPV4] and 2001:db8::1 mail a@b.com"; got != want {
		t.Errorf("ipv4 only: %q, want %q", got, want)
	}
}

// TestOverlap: when findings overlap the longest wins and nothing inside it leaks or is counted
// twice; a private key block swallows whatever it contains.
func TestOverlap(t *testing.T) {
	m := newMasker(t, Config{Kinds: AllKinds()})
	cases := []struct {
		in, want string
		counts   map[string]int
	}{
		{"-----BEGIN PRIVATE KEY-----\nMIIE a@b.com 4111111111111111\n-----END PRIVATE KEY-----",
			"[PRIVATE_KEY]", map[string]int{KindPrivateKey: 1}},
		{"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
			"Authorization: [BEARER]", map[string]int{KindBearer: 1}},
		{"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
			"Bearer [BEARER]", map[string]int{KindBearer: 1}},
		// 9001011234568 is a valid bare RRN; a same-length card would lose to it on specificity.
		{"9001011234568", "[RRN_KR]", map[string]int{KindRRNKR: 1}},
		// Phone and card in one digit run: both found, each masked.
		{"010-1234-5678 4111 1111 1111 1111", "[PHONE_KR] [CARD]", map[string]int{KindPhoneKR: 1, KindCard: 1}},
		// E-mail local part made of digits: one finding, the e-mail.
		{"4111111111111111@example.com", "[EMAIL]", map[string]int{KindEmail: 1}},
	}
	for _, tc := range cases {
		got, counts := m.String(tc.in)
		if got != tc.want || !maps.Equal(counts, tc.counts) {
			t.Errorf("String(%q) = %q %v, want %q %v", tc.in, got, counts, tc.want, tc.counts)
		}
	}
}

// TestRegressions are inputs the fuzzer found (also kept in testdata/fuzz): masking them twice
// must find nothing new.
func TestRegressions(t *testing.T) {
	m := newMasker(t, Config{Kinds: AllKinds()})
	for _, in := range []string{
		"0 10.0.0.0+0000000000", // the ipv4 pass masked the byte the e164 rule had looked at
	} {
		out, _ := m.String(in)
		if out2, c := m.String(out); len(c) != 0 || out2 != out {
			t.Errorf("%q -> %q -> %q %v", in, out, out2, c)
		}
	}
}

// TestTruncate: past MaxInput nothing of the input survives — not even part of a card number cut
// in two — and the cut is reported.
func TestTruncate(t *testing.T) {
	m := newMasker(t, Config{MaxInput: 100})
	in := strings.Repeat("x", 90) + " 4111 1111 1111 1111 then a@b.com"
	got, counts := m.String(in)
	if !strings.HasSuffix(got, "[TRUNCATED]") || strings.ContainsAny(got, "14@") {
		t.Errorf("got %q", got)
	}
	if !maps.Equal(counts, map[string]int{KindTruncated: 1}) {
		t.Errorf("counts %v", counts)
	}
	if len(got) > 100+len("[TRUNCATED]") {
		t.Errorf("len %d", len(got))
	}
	// No safe point in the last 64 bytes: cut 64 early rather than pass a partial token.
	in = strings.Repeat("a", 200)
	got, _ = m.String(in)
	if want := strings.Repeat("a", 36) + "[TRUNCATED]"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// Exactly at the cap: no truncation.
	in = strings.Repeat("y", 100)
	if got, counts := m.String(in); got != in || counts != nil {
		t.Errorf("at cap: %q %v", got, counts)
	}
	// Never cut inside a UTF-8 sequence.
	in = strings.Repeat("가", 50)
	if got, _ := m.String(in); !strings.HasPrefix(got, strings.Repeat("가", 33)) || strings.ContainsRune(got, '\uFFFD') {
		t.Errorf("utf-8 cut: %q", got)
	}
}

func TestNewErrors(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"unknown kind", Config{Kinds: []string{"email", "passport"}}, `unknown kind "passport"`},
		{"negative max", Config{MaxInput: -1}, "negative"},
		{"empty replacement", Config{Replacement: func(string) string { return "" }}, "must begin and end"},
		{"bare word", Config{Replacement: func(k string) string { return strings.ToUpper(k) }}, "must begin and end"},
		{"replacement matched", Config{Replacement: func(string) string { return "[a@b.com]" }}, "is itself masked"},
		{"bad action", Config{FieldRules: map[string]Action{"x": "drop"}}, `unknown action "drop"`},
		{"bad pointer", Config{FieldRules: map[string]Action{"/a/~2": ActionMask}}, "bad escape"},
	}
	for _, tc := range cases {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
	if _, err := New(Config{Kinds: []string{}}); err != nil {
		t.Errorf("no kinds: %v", err)
	}
}

// TestNoKinds: with no detector enabled nothing is masked by content.
func TestNoKinds(t *testing.T) {
	m := newMasker(t, Config{Kinds: []string{}})
	if got, c := m.String("a@b.com 010-1234-5678"); got != "a@b.com 010-1234-5678" || c != nil {
		t.Errorf("got %q %v", got, c)
	}
}
