package mcp

import (
	"container/list"
	"errors"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
)

// Limiting unauthenticated requests: a request that carries no credential or one the gateway
// refuses costs it a token check (a signature, perhaps an introspection) and an audit event. Each
// source address gets a token bucket for such requests; once it is empty the gateway answers 429
// Too Many Requests with Retry-After and a JSON-RPC error instead of 401. Requests
// that authenticate are never limited here. Sources are IPv4 addresses and IPv6 /64 networks
// (one host holds a whole /64), at most [UnauthLimit.MaxSources] of them, least recently seen
// forgotten first.
//
// The audit of these refusals (401 and 429 alike) is limited too, by one bucket for the whole
// gateway, so that a flood from many addresses cannot flood the audit topic. A refusal beyond it
// is not published on its own but counted, and the count goes on the next refusal event that is
// published ("mcp.unauth.suppressed"), and on the mcpwatch_gateway_unauth_unaudited_total metric.

// Defaults of [UnauthLimit].
const (
	DefaultUnauthRate       = 1.0   // refused requests per second per source, sustained
	DefaultUnauthBurst      = 20    // refused requests per source before limiting starts
	DefaultUnauthMaxSources = 16384 // sources remembered
	DefaultUnauthAuditRate  = 20.0  // refusal events per second for the whole gateway
	DefaultUnauthAuditBurst = 100
)

// CodeRateLimited answers a request refused because its source sent too many unauthenticated
// requests (HTTP 429).
const CodeRateLimited = -32086

// attrUnauthSuppressed is the number of refusals of unauthenticated requests not audited one by
// one since the last refusal event.
const attrUnauthSuppressed = "mcp.unauth.suppressed"

// UnauthLimit is [Config.Unauthenticated].
type UnauthLimit struct {
	// Rate of refused requests per second a source may sustain; 0 means [DefaultUnauthRate],
	// negative turns limiting off.
	Rate float64
	// Burst is how many refused requests a source may send at once. 0: [DefaultUnauthBurst].
	Burst int
	// MaxSources bounds the sources remembered. 0: [DefaultUnauthMaxSources].
	MaxSources int
	// AuditRate and AuditBurst bound the refusal events published per second for the whole
	// gateway; the rest are counted. 0: [DefaultUnauthAuditRate], [DefaultUnauthAuditBurst].
	AuditRate  float64
	AuditBurst int
}

func (l UnauthLimit) validate() error {
	if l.Burst < 0 || l.MaxSources < 0 || l.AuditRate < 0 || l.AuditBurst < 0 {
		return errors.New("unauthenticated limits must not be negative (a negative rate turns limiting off)")
	}
	return nil
}

func (l UnauthLimit) withDefaults() UnauthLimit {
	if l.Rate == 0 {
		l.Rate = DefaultUnauthRate
	}
	if l.Burst == 0 {
		l.Burst = DefaultUnauthBurst
	}
	if l.MaxSources == 0 {
		l.MaxSources = DefaultUnauthMaxSources
	}
	if l.AuditRate == 0 {
		l.AuditRate = DefaultUnauthAuditRate
	}
	if l.AuditBurst == 0 {
		l.AuditBurst = DefaultUnauthAuditBurst
	}
	return l
}

// unauthLimiter holds the per-source buckets (an LRU) and the audit bucket.
type unauthLimiter struct {
	cfg   UnauthLimit // with defaults
	mu    sync.Mutex
	order *list.List // of *source, most recently seen first
	bySrc map[string]*list.Element
	audit *rate.Limiter
	// unaudited counts refusals not published since the last refusal event.
	unaudited int
}

type source struct {
	key string
	lim *rate.Limiter
}

func newUnauthLimiter(cfg UnauthLimit) *unauthLimiter {
	cfg = cfg.withDefaults()
	l := &unauthLimiter{cfg: cfg, order: list.New(), bySrc: map[string]*list.Element{},
		audit: rate.NewLimiter(rate.Limit(cfg.AuditRate), cfg.AuditBurst)}
	return l
}

// sourceKey is the bucket of a client address: the IPv4 address, or the IPv6 /64.
func sourceKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// refused takes a token from the source's bucket for one refused request. ok is false when the
// bucket is empty; retry is then how long until it holds a token again. Limiting off: always ok.
func (l *unauthLimiter) refused(ip string, now time.Time) (ok bool, retry time.Duration) {
	if l.cfg.Rate < 0 {
		return true, 0
	}
	key := sourceKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	var s *source
	if el, found := l.bySrc[key]; found {
		l.order.MoveToFront(el)
		s = el.Value.(*source)
	} else {
		s = &source{key: key, lim: rate.NewLimiter(rate.Limit(l.cfg.Rate), l.cfg.Burst)}
		l.bySrc[key] = l.order.PushFront(s)
		for l.order.Len() > l.cfg.MaxSources {
			old := l.order.Back()
			l.order.Remove(old)
			delete(l.bySrc, old.Value.(*source).key)
		}
	}
	if s.lim.AllowN(now, 1) {
		return true, 0
	}
	r := s.lim.ReserveN(now, 1)
	retry = r.DelayFrom(now)
	r.CancelAt(now)
	return false, retry
}

// auditable reports whether a refusal event may be published now, and if so how many refusals
// went unpublished before it (which the event reports); if not, it counts this one.
func (l *unauthLimiter) auditable(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.audit.AllowN(now, 1) {
		l.unaudited++
		return false, 0
	}
	suppressed, l.unaudited = l.unaudited, 0
	return true, suppressed
}

// Len is the number of sources remembered.
func (l *unauthLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.order.Len()
}

// retryAfter is the Retry-After value for a wait: whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

// refuseUnauthenticated answers an unauthenticated request (with status and text, headers
// already set) or, when its source has sent too many, 429; and publishes its event if the audit
// budget allows, with the count of those it did not publish.
func (g *Gateway) refuseUnauthenticated(w http.ResponseWriter, c *call, status int, reason, text string) {
	now := time.Now()
	e := g.event(c, event.DirRequest)
	e.Attributes = map[string]string{"http.method": mcpwire.Clip(c.r.Method, 32)}
	code := CodeUnauthenticated
	if status != http.StatusServiceUnavailable { // the authorization server's outage is not the client's doing
		if ok, retry := g.unauth.refused(c.net.SrcIP, now); !ok {
			h := w.Header()
			h.Del("WWW-Authenticate")
			h.Set("Retry-After", retryAfter(retry))
			status, reason, code = http.StatusTooManyRequests, denyRateLimited, CodeRateLimited
			text = "too many unauthenticated requests from this address; retry after " + h.Get("Retry-After") + "s"
		}
	}
	events := []*event.Event{e}
	if ok, suppressed := g.unauth.auditable(now); !ok {
		events = nil
		g.m.unaudited.Inc()
	} else if suppressed > 0 {
		e.Attributes[attrUnauthSuppressed] = strconv.Itoa(suppressed)
	}
	g.refuse(w, c, events, nil, false, status, reason, code, text, "")
}
