package mcp

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func mustProxies(t testing.TB, list ...string) trustedProxies {
	t.Helper()
	var tp trustedProxies
	for _, s := range list {
		p, err := ParseTrustedProxy(s)
		if err != nil {
			t.Fatal(err)
		}
		tp = append(tp, p)
	}
	return tp
}

// The client address behind trusted proxies. If this failed, a client could choose the address
// that policy IP ranges and the unauthenticated limit see (by prepending hops, or through a proxy
// nobody trusted), or a misbehaving proxy could fail requests.
func TestForwardedClient(t *testing.T) {
	tp := mustProxies(t, "10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.10")
	for _, tc := range []struct {
		name    string
		peer    string
		headers map[string][]string
		want    string // client address[:port], "" for none
		res     forwardResult
	}{
		{"untrusted peer ignores headers", "203.0.113.5", map[string][]string{"X-Forwarded-For": {"198.51.100.1"}, "Forwarded": {"for=198.51.100.1"}}, "", fwdNone},
		{"untrusted peer just outside the prefix", "11.0.0.1", map[string][]string{"X-Forwarded-For": {"198.51.100.1"}}, "", fwdNone},
		{"trusted peer, no header", "10.1.2.3", nil, "", fwdAbsent},
		{"xff single proxy", "10.1.2.3", map[string][]string{"X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.1:0", fwdXFF},
		{"xff chain of trusted proxies", "10.1.2.3", map[string][]string{"X-Forwarded-For": {"198.51.100.1, 10.9.9.9, 192.0.2.10"}}, "198.51.100.1:0", fwdXFF},
		{"xff spoofed prepend", "10.1.2.3", map[string][]string{"X-Forwarded-For": {"1.2.3.4, 198.51.100.1"}}, "198.51.100.1:0", fwdXFF},
		{"xff spoofed trusted prepend", "10.1.2.3", map[string][]string{"X-Forwarded-For": {"10.0.0.1, 198.51.100.1"}}, "198.51.100.1:0", fwdXFF},
		{"xff garbage left of the client", "10.1.2.3", map[string][]string{"X-Forwarded-For": {"not an address, 198.51.100.1"}}, "198.51.100.1:0", fwdXFF},
		{"xff several lines", "10.1.2.3", map[string][]string{"X-Forwarded-For": {"1.2.3.4", "198.51.100.1, 10.2.2.2"}}, "198.51.100.1:0", fwdXFF},
		{"xff all trusted: the leftmost", "10.1.2.3", map[string][]string{"X-Forwarded-For": {"10.0.0.5, 10.0.0.6"}}, "10.0.0.5:0", fwdXFF},
		{"xff bare ipv6", "10.1.2.3", map[string][]string{"X-Forwarded-For": {"2001:db8::1"}}, "[2001:db8::1]:0", fwdXFF},
		{"xff ipv4 with port", "10.1.2.3", map[string][]string{"X-Forwarded-For": {"198.51.100.1:4711"}}, "198.51.100.1:4711", fwdXFF},
		{"xff 4in6 unmapped", "10.1.2.3", map[string][]string{"X-Forwarded-For": {"::ffff:198.51.100.1"}}, "198.51.100.1:0", fwdXFF},
		{"xff empty elements", "10.1.2.3", map[string][]string{"X-Forwarded-For": {" , 198.51.100.1 ,"}}, "198.51.100.1:0", fwdXFF},
		{"xff malformed client hop", "10.1.2.3", map[string][]string{"X-Forwarded-For": {"198.51.100.1, 300.1.1.1"}}, "", fwdMalformed},
		{"xff hostname", "10.1.2.3", map[string][]string{"X-Forwarded-For": {"client.example"}}, "", fwdMalformed},
		{"xff zone", "10.1.2.3", map[string][]string{"X-Forwarded-For": {"fe80::1%eth0"}}, "", fwdMalformed},
		{"xff unknown", "10.1.2.3", map[string][]string{"X-Forwarded-For": {"unknown"}}, "", fwdObfuscated},
		{"ipv6 trusted peer", "2001:db8:ffff::1", map[string][]string{"X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.1:0", fwdXFF},
		{"4in6 trusted peer", "::ffff:10.1.2.3", map[string][]string{"X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.1:0", fwdXFF},

		{"forwarded", "10.1.2.3", map[string][]string{"Forwarded": {"for=198.51.100.1;proto=https;by=10.1.2.3"}}, "198.51.100.1:0", fwdForwarded},
		{"forwarded wins over xff", "10.1.2.3", map[string][]string{"Forwarded": {"for=198.51.100.1"}, "X-Forwarded-For": {"198.51.100.99"}}, "198.51.100.1:0", fwdForwarded},
		{"forwarded without for: xff", "10.1.2.3", map[string][]string{"Forwarded": {"proto=https"}, "X-Forwarded-For": {"198.51.100.99"}}, "198.51.100.99:0", fwdXFF},
		{"forwarded quoted ipv6 with port", "10.1.2.3", map[string][]string{"Forwarded": {`For="[2001:db8::1]:4711"`}}, "[2001:db8::1]:4711", fwdForwarded},
		{"forwarded quoted ipv4 with port", "10.1.2.3", map[string][]string{"Forwarded": {`for="198.51.100.1:4711"`}}, "198.51.100.1:4711", fwdForwarded},
		{"forwarded obfuscated port", "10.1.2.3", map[string][]string{"Forwarded": {`for="198.51.100.1:_p1"`}}, "198.51.100.1:0", fwdForwarded},
		{"forwarded chain", "10.1.2.3", map[string][]string{"Forwarded": {"for=198.51.100.1, for=10.3.3.3;by=x, for=192.0.2.10"}}, "198.51.100.1:0", fwdForwarded},
		{"forwarded spoofed prepend", "10.1.2.3", map[string][]string{"Forwarded": {"for=1.2.3.4, for=198.51.100.1"}}, "198.51.100.1:0", fwdForwarded},
		{"forwarded line of its own", "10.1.2.3", map[string][]string{"Forwarded": {"for=1.2.3.4", "for=198.51.100.1"}}, "198.51.100.1:0", fwdForwarded},
		// The library stops at a line ending in ";" when given several: parsed line by line, the
		// client's line cannot hide the proxy's.
		{"forwarded client line ending in semicolon", "10.1.2.3", map[string][]string{"Forwarded": {"for=1.2.3.4;", "for=198.51.100.1"}}, "198.51.100.1:0", fwdForwarded},
		{"forwarded malformed client line", "10.1.2.3", map[string][]string{"Forwarded": {`for="1.2.3.4`, "for=198.51.100.1"}}, "198.51.100.1:0", fwdForwarded},
		{"forwarded obfuscated client", "10.1.2.3", map[string][]string{"Forwarded": {"for=198.51.100.1, for=_hidden"}}, "", fwdObfuscated},
		{"forwarded unknown client", "10.1.2.3", map[string][]string{"Forwarded": {"for=198.51.100.1, for=unknown"}}, "", fwdObfuscated},
		{"forwarded unknown left of the client", "10.1.2.3", map[string][]string{"Forwarded": {"for=unknown, for=198.51.100.1"}}, "198.51.100.1:0", fwdForwarded},
		{"forwarded unquoted ipv6", "10.1.2.3", map[string][]string{"Forwarded": {"for=2001:db8::1"}}, "", fwdMalformed},
		{"forwarded ipv4 in brackets", "10.1.2.3", map[string][]string{"Forwarded": {`for="[198.51.100.1]"`}}, "", fwdMalformed},
		{"forwarded unterminated bracket", "10.1.2.3", map[string][]string{"Forwarded": {`for="[2001:db8::1"`}}, "", fwdMalformed},
		{"forwarded bad port", "10.1.2.3", map[string][]string{"Forwarded": {`for="198.51.100.1:99999"`}}, "", fwdMalformed},
		{"forwarded quote swallowing the proxy's hop", "10.1.2.3", map[string][]string{"Forwarded": {`for="x, for="[2001:db8::1]"`}}, "", fwdMalformed},
		{"forwarded garbage", "10.1.2.3", map[string][]string{"Forwarded": {"for"}}, "", fwdMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, vs := range tc.headers {
				for _, v := range vs {
					h.Add(k, v)
				}
			}
			ap, res := tp.client(netip.MustParseAddr(tc.peer), h)
			got := ""
			if ap.Addr().IsValid() {
				got = ap.String()
			}
			if got != tc.want || res != tc.res {
				t.Errorf("client = %q, %q; want %q, %q", got, res, tc.want, tc.res)
			}
		})
	}
	// No proxy configured: headers are never read.
	if ap, res := (trustedProxies)(nil).client(netip.MustParseAddr("10.1.2.3"), http.Header{"X-Forwarded-For": {"1.2.3.4"}}); ap.IsValid() || res != fwdNone {
		t.Errorf("no trusted proxies: %v %q", ap, res)
	}
}

func TestParseTrustedProxy(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.0/8": "10.0.0.0/8", "10.1.2.3/8": "10.0.0.0/8", "192.0.2.1": "192.0.2.1/32",
		"2001:db8::/32": "2001:db8::/32", "2001:db8::1": "2001:db8::1/128", "::ffff:10.0.0.1": "10.0.0.1/32", " 10.0.0.1 ": "10.0.0.1/32"} {
		p, err := ParseTrustedProxy(in)
		if err != nil || p.String() != want {
			t.Errorf("ParseTrustedProxy(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"", "10.0.0.0/33", "proxy.internal", "fe80::1%eth0", "10.0.0.0/8/8"} {
		if p, err := ParseTrustedProxy(in); err == nil {
			t.Errorf("ParseTrustedProxy(%q) = %v, accepted", in, p)
		}
	}
}

// The User-Agent in events: a client-written header, so bounded and free of control characters
// that would forge log lines or drive terminals.
func TestUserAgent(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "",
		"claude-code/1.0 (darwin)": "claude-code/1.0 (darwin)",
		"evil\r\nX-Injected: 1":    "evil\uFFFD\uFFFDX-Injected: 1",
		"bell\x07\x1b[31m red":     "bell\uFFFD\uFFFD[31m red",
		"bad \xff utf8":            "bad \uFFFD utf8",
		"line\u2028sep":            "line\uFFFDsep",
	} {
		if got := userAgent(http.Header{"User-Agent": {in}}); got != want {
			t.Errorf("userAgent(%q) = %q, want %q", in, got, want)
		}
	}
	long := userAgent(http.Header{"User-Agent": {strings.Repeat("é", 1000)}})
	if len(long) > MaxUserAgentLen || !utf8.ValidString(long) || len(long) < MaxUserAgentLen-2 {
		t.Errorf("long user agent: %d bytes, valid %v", len(long), utf8.ValidString(long))
	}
}

// FuzzForwarded: forwarding headers are the client's to write (a trusted proxy only appends), so
// no value may panic or fail, an answer is a plain address, and what a client prepends (a line of
// its own ahead of the proxy's) never changes an untrusted client address that was found.
func FuzzForwarded(f *testing.F) {
	for _, s := range []string{
		"for=198.51.100.1", `for="[2001:db8::1]:4711"`, "for=_hidden, for=unknown", "for=1.2.3.4;", `for="x`,
		"for=198.51.100.1;proto=https;by=10.0.0.1, for=10.0.0.2", `for="\"[::1]\""`, "198.51.100.1, 10.0.0.1",
		"[2001:db8::1]:80", "::ffff:10.0.0.1", "", ",,,", "for=", `for=""`, "for=[", "_:_",
	} {
		f.Add(s, "198.51.100.7")
	}
	tp := mustProxies(f, "10.0.0.0/8", "2001:db8::/64")
	peer := netip.MustParseAddr("10.0.0.1")
	f.Fuzz(func(t *testing.T, fwd, xff string) {
		h := http.Header{}
		if fwd != "" {
			h.Set("Forwarded", fwd)
		}
		if xff != "" {
			h.Set("X-Forwarded-For", xff)
		}
		ap, res := tp.client(peer, h)
		switch res {
		case fwdForwarded, fwdXFF:
			if a := ap.Addr(); !a.IsValid() || a.Zone() != "" || a.Is4In6() {
				t.Fatalf("%q / %q: client %v", fwd, xff, ap)
			}
			if tp.contains(ap.Addr()) {
				break // all hops trusted: the leftmost, which a prepended hop replaces
			}
			spoofed := http.Header{}
			if res == fwdForwarded {
				spoofed["Forwarded"] = []string{"for=1.2.3.4", fwd}
				spoofed.Set("X-Forwarded-For", xff)
			} else {
				if fwd != "" {
					spoofed.Set("Forwarded", fwd)
				}
				spoofed["X-Forwarded-For"] = []string{"1.2.3.4", xff}
			}
			if ap2, res2 := tp.client(peer, spoofed); ap2 != ap || res2 != res {
				t.Fatalf("%q / %q: a prepended hop turned %v (%s) into %v (%s)", fwd, xff, ap, res, ap2, res2)
			}
		case fwdAbsent, fwdObfuscated, fwdMalformed:
			if ap.IsValid() {
				t.Fatalf("%q / %q: %q with an address %v", fwd, xff, res, ap)
			}
		default:
			t.Fatalf("result %q", res)
		}
		if ua := userAgent(http.Header{"User-Agent": {fwd}}); len(ua) > MaxUserAgentLen || !utf8.ValidString(ua) ||
			strings.ContainsFunc(ua, unicode.IsControl) {
			t.Fatalf("user agent %q from %q", ua, fwd)
		}
	})
}
