package ebpf

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// AllowRule lets a sandbox connect to, or send UDP to, the addresses in Prefix on Port (0: any
// port). IPv4 prefixes also match IPv4-mapped IPv6 destinations (::ffff:a.b.c.d).
type AllowRule struct {
	Prefix netip.Prefix
	Port   uint16
}

// String returns the rule in the form [ParseAllowRule] reads.
func (r AllowRule) String() string {
	port := "*"
	if r.Port != 0 {
		port = strconv.Itoa(int(r.Port))
	}
	if r.Prefix.Addr().Is6() {
		return "[" + r.Prefix.String() + "]:" + port
	}
	return r.Prefix.String() + ":" + port
}

// ErrHostname is wrapped by [ParseAllowRule] when a rule names a host instead of an address.
var ErrHostname = errors.New("hostnames are not supported in egress allow-lists")

// ParseAllowRule reads one allow-list entry of the gateway config's egress section:
//
//	10.0.0.0/8:443     a CIDR and a port
//	192.0.2.7:5432     one address (a /32 or /128) and a port
//	10.0.0.0/8:*       any port
//	[2001:db8::/32]:443, [::1]:8080   IPv6 in brackets
//
// Hostnames are refused ([ErrHostname]): the kernel matches addresses, and a name's addresses
// change under it; resolving them would need a resolver the sandbox cannot influence and a
// refresh loop, which are not built. The address part is masked to its prefix (10.1.2.3/8 is
// read as 10.0.0.0/8).
func ParseAllowRule(s string) (AllowRule, error) {
	orig := s
	s = strings.TrimSpace(s)
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return AllowRule{}, fmt.Errorf("egress rule %q: want CIDR:port (e.g. 10.0.0.0/8:443, [2001:db8::/32]:443, 10.0.0.0/8:* for any port)", orig)
	}
	host, port := s[:i], s[i+1:]
	bracketed := strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]")
	if bracketed {
		host = host[1 : len(host)-1]
	} else if strings.Contains(host, ":") {
		return AllowRule{}, fmt.Errorf("egress rule %q: put an IPv6 address in brackets: [2001:db8::/32]:443", orig)
	}
	var r AllowRule
	if port != "*" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return AllowRule{}, fmt.Errorf("egress rule %q: port %q is not 1-65535 or *", orig, port)
		}
		r.Port = uint16(n)
	}
	var err error
	if strings.Contains(host, "/") {
		r.Prefix, err = netip.ParsePrefix(host)
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(host); err == nil {
			if a.Zone() != "" {
				return AllowRule{}, fmt.Errorf("egress rule %q: zones (%%%s) are not supported", orig, a.Zone())
			}
			r.Prefix = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil {
		if looksLikeHost(host) {
			return AllowRule{}, fmt.Errorf("egress rule %q: %w: give the addresses as CIDR:port", orig, ErrHostname)
		}
		return AllowRule{}, fmt.Errorf("egress rule %q: not an address or CIDR: %w", orig, err)
	}
	if r.Prefix.Addr().Is6() && !bracketed {
		return AllowRule{}, fmt.Errorf("egress rule %q: put an IPv6 address in brackets: [2001:db8::/32]:443", orig)
	}
	r.Prefix = r.Prefix.Masked()
	return r, nil
}

// ParseAllowRules parses every entry, reporting every bad one at once.
func ParseAllowRules(entries []string) ([]AllowRule, error) {
	var errs []error
	out := make([]AllowRule, 0, len(entries))
	for _, s := range entries {
		r, err := ParseAllowRule(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func looksLikeHost(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return strings.ContainsAny(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
}

// egressKey is egress.bpf.c's struct egress_key.
type egressKey struct {
	PrefixLen uint32
	Policy    uint32
	Port      uint16
	Addr      [16]byte
	Pad       [2]byte
}

// keyOf returns the trie key of a rule in a policy: IPv4 as ::ffff:a.b.c.d.
func keyOf(policy uint32, r AllowRule) egressKey {
	a := r.Prefix.Addr()
	bits := r.Prefix.Bits()
	if a.Is4() {
		bits += 96
	}
	return egressKey{PrefixLen: uint32(32 + 16 + bits), Policy: policy, Port: r.Port, Addr: a.As16()}
}

// canonical returns the rules sorted and deduplicated, and a string naming the set.
func canonical(rules []AllowRule) ([]AllowRule, string) {
	rs := slices.Clone(rules)
	for i := range rs {
		rs[i].Prefix = rs[i].Prefix.Masked()
	}
	slices.SortFunc(rs, func(a, b AllowRule) int { return strings.Compare(a.String(), b.String()) })
	rs = slices.Compact(rs)
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.String()
	}
	return rs, strings.Join(names, ",")
}

func egressReason(e Event) string {
	what := "connect"
	if e.Syscall == "sendmsg" {
		what = "UDP send"
	}
	if e.EgressRule == EgressRuleBlocked {
		return fmt.Sprintf("%s to %s refused in the kernel: the sandbox's egress is blocked", what, e.Addr)
	}
	return fmt.Sprintf("%s to %s refused in the kernel: not in the server's egress allow-list", what, e.Addr)
}
