package mcp

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/muhlemmer/httpforwarded"

	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
)

// MaxUserAgentLen bounds the User-Agent header kept in events.
const MaxUserAgentLen = 256

// ParseTrustedProxy parses one trusted proxy: a CIDR prefix (10.0.0.0/8, 2001:db8::/32) or a
// single address (a /32 or /128).
func ParseTrustedProxy(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q: want a CIDR prefix or an IP address", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: want a CIDR prefix or an IP address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// forwardResult says where a request's client address came from, the values of the forwarded
// counter's result label. Only requests whose TCP peer is a trusted proxy are counted.
type forwardResult string

const (
	fwdNone       forwardResult = ""                // the peer is not a trusted proxy: headers ignored
	fwdForwarded  forwardResult = "forwarded"       // RFC 7239 Forwarded for=
	fwdXFF        forwardResult = "x_forwarded_for" // X-Forwarded-For
	fwdAbsent     forwardResult = "absent"          // a trusted proxy that forwarded no address
	fwdObfuscated forwardResult = "obfuscated"      // the client hop is "unknown" or an obfuscated identifier
	fwdMalformed  forwardResult = "malformed"       // a header that does not parse
)

// trustedProxies are the proxies whose forwarding headers the gateway believes.
type trustedProxies []netip.Prefix

func (t trustedProxies) contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// client is the address of the client behind peer: the TCP peer itself unless the peer is a
// trusted proxy, in which case it is the first address, walking the forwarded hops from the
// right (the hop the peer appended), that is not itself a trusted proxy. Hops left of it were
// written by the client or by proxies not trusted, so a client cannot spoof its address by
// prepending one. When every hop is a trusted proxy, the leftmost is the client (each was vouched
// for by the trusted hop to its right).
//
// Forwarded (RFC 7239) is read when it carries for=, else X-Forwarded-For; a proxy that writes
// only X-Forwarded-For must therefore strip a client's Forwarded header. An unknown or obfuscated
// identifier where the client should be, or a header that does not parse, yields no address:
// the caller keeps the peer.
func (t trustedProxies) client(peer netip.Addr, h http.Header) (netip.AddrPort, forwardResult) {
	if len(t) == 0 || !peer.IsValid() || !t.contains(peer) {
		return netip.AddrPort{}, fwdNone
	}
	if lines := h.Values("Forwarded"); len(lines) > 0 {
		if ap, res := t.walk(lines, forwardedHops, fwdForwarded); res != fwdAbsent {
			return ap, res
		}
	}
	return t.walk(h.Values("X-Forwarded-For"), xffHops, fwdXFF)
}

// walk goes through the hops of header lines from the right, answering found when it finds the
// client; hops parses one line into its hops in order. Lines are parsed lazily from the last, so
// that a malformed line a client sent ahead of the proxy's own does not hide the proxy's.
func (t trustedProxies) walk(lines []string, hops func(string) ([]string, error), found forwardResult) (netip.AddrPort, forwardResult) {
	var last netip.AddrPort
	for i := len(lines) - 1; i >= 0; i-- {
		hs, err := hops(lines[i])
		if err != nil {
			return netip.AddrPort{}, fwdMalformed
		}
		for j := len(hs) - 1; j >= 0; j-- {
			ap, known, ok := parseNode(hs[j])
			switch {
			case !ok:
				return netip.AddrPort{}, fwdMalformed
			case !known:
				return netip.AddrPort{}, fwdObfuscated
			}
			last = ap
			if !t.contains(ap.Addr()) {
				return ap, found
			}
		}
	}
	if last.Addr().IsValid() {
		return last, found
	}
	return netip.AddrPort{}, fwdAbsent
}

// forwardedHops are the for= values of one Forwarded line, parsed by muhlemmer/httpforwarded one
// line at a time: given several lines, it stops at the first that ends in ";", which would let a
// client's line hide the proxy's.
func forwardedHops(line string) ([]string, error) {
	return httpforwarded.ParseParameter("for", []string{line})
}

// xffHops are the comma-separated hops of one X-Forwarded-For line; empty elements are skipped,
// as in any HTTP list.
func xffHops(line string) ([]string, error) {
	var hs []string
	for h := range strings.SplitSeq(line, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hs = append(hs, h)
		}
	}
	return hs, nil
}

// parseNode parses one hop: an RFC 7239 node (IPv4 or "[IPv6]", either with an optional port;
// "unknown"; an obfuscated "_identifier"), or a bare IPv6 address as X-Forwarded-For writes it.
// known is false for unknown and obfuscated identifiers; ok is false for anything else that is
// not an address. An obfuscated port is dropped.
func parseNode(s string) (ap netip.AddrPort, known, ok bool) {
	if isObfuscated(s) {
		return netip.AddrPort{}, false, true
	}
	host, port, bracketed := s, "", false
	if rest, found := strings.CutPrefix(s, "["); found {
		h, after, closed := strings.Cut(rest, "]")
		if !closed {
			return netip.AddrPort{}, false, false
		}
		host, bracketed = h, true
		if after != "" {
			p, colon := strings.CutPrefix(after, ":")
			if !colon || p == "" {
				return netip.AddrPort{}, false, false
			}
			port = p
		}
	} else if strings.Count(s, ":") == 1 { // an IPv6 address has at least two
		host, port, _ = strings.Cut(s, ":")
		if port == "" {
			return netip.AddrPort{}, false, false
		}
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" || (bracketed && !a.Is6()) {
		return netip.AddrPort{}, false, false
	}
	var n uint64
	switch {
	case port == "":
	case port[0] == '_':
		if !isObfuscated(port) {
			return netip.AddrPort{}, false, false
		}
	default:
		if n, err = strconv.ParseUint(port, 10, 16); err != nil {
			return netip.AddrPort{}, false, false
		}
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(n)), true, true
}

// isObfuscated reports whether s is "unknown" or an RFC 7239 obfnode/obfport: "_" followed by
// ALPHA, DIGIT, ".", "_" or "-".
func isObfuscated(s string) bool {
	if strings.EqualFold(s, "unknown") {
		return true
	}
	if len(s) < 2 || s[0] != '_' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// userAgent is the User-Agent header as events keep it: invalid UTF-8 and control characters
// replaced (it is the client's to write, and ends up in logs and SIEM lines), clipped.
func userAgent(h http.Header) string {
	ua := h.Get("User-Agent")
	if ua == "" {
		return ""
	}
	ua = mcpwire.Clip(ua, MaxUserAgentLen+utf8.UTFMax) // bound the work before cleaning
	ua = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError || r == '\u2028' || r == '\u2029' {
			return '\uFFFD'
		}
		return r
	}, strings.ToValidUTF8(ua, "\uFFFD"))
	return mcpwire.Clip(strings.TrimSpace(ua), MaxUserAgentLen)
}
