package ueba

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/gonum/stat"

	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/event"
)

// result is one check's verdict on the event being judged, with what its evidence needs. Its
// strings must not refer to the event: signals carry them to the scorer and peaks keep them
// (see [detect.Detector]). Words are formatted (sayers) only for evidence that is published.
type result struct {
	v         float64
	feature   string
	obs, base float64
	src       string
	pct       float64
	hasPeer   bool
	ws, we    int64
	a, b      string  // names for the detail
	x, y      float64 // numbers for the detail
	noFinding bool    // novelty without a trusted baseline: signal only
}

const (
	srcSelf  = "self"
	srcPeers = "peers"
	srcRule  = "rule"
)

// judge runs every enabled check on the event.
func (d *Detector) judge(p *profile, e *event.Event, c *evctx) {
	for i := range d.res {
		d.res[i] = result{}
	}
	if p.group != nil {
		p.group.refresh(c.now, &d.scratch)
	}
	if tool := e.Attributes["mcp.tool.changed"]; tool != "" {
		d.rugPull(c, tool, 90)
	} else if tool := e.Attributes["mcp.tool.unapproved"]; tool != "" {
		d.rugPull(c, tool, 50)
	}
	if !c.req {
		if e.MCP.Direction == event.DirResponse {
			d.volume(p, c)
		}
		return
	}
	d.rate(p, c)
	d.newValue(p, c)
	d.sensitivity(p, c)
	d.denials(p, c)
	d.offHours(p, c)
	d.concurrent(p, e, c)
	d.exfiltration(p, e, c)
	d.drift(p, c)
	d.lowSlow(p, c)
	d.egressPII(p, e, c)
}

func (p *profile) windowSum(secs int, f func(i int64) float64) float64 {
	var s float64
	for k := range int64(secs) {
		s += f((p.n.SecHead - k) % secRing)
	}
	return s
}

// peerOK says whether p's peer group is a usable baseline.
func (d *Detector) peerOK(p *profile) bool { return p.group.thick(d.cfg.MinPeers) }

// level is what a count or mass is judged against: the busy level (p95) of the principal's own
// active minutes or hours when its history is trusted, else a typical peer's busy level (peer
// levels are members' p95s), else a rule; and the spread above it that counts as one step.
type level struct {
	hi, spread float64
	src        string
}

// exceed is how many spreads x lies above the busy level: heavy-tailed activity (bursts of
// calls, then pauses) is judged by its upper tail, not by a median and MAD that a quiet
// principal's zeros make tiny.
func (l level) exceed(x float64) float64 { return (x - l.hi) / l.spread }

// levelOf picks the baseline of feature lv for p. floor bounds the spread from below (Poisson
// noise for counts).
func (d *Detector) levelOf(p *profile, c *evctx, own baseline, lv int, rule float64, floor func(hi float64) float64) level {
	switch {
	case c.conf >= d.cfg.ConfidenceGate && own.N >= 5:
		hi := float64(own.P95)
		return level{hi, max(hi-float64(own.Med), floor(hi)), srcSelf}
	case d.peerOK(p):
		b := p.group.base[lv]
		hi := float64(b.Med)
		return level{hi, max(float64(b.P95)-hi, floor(hi)), srcPeers}
	}
	return level{rule, floor(rule), srcRule}
}

func poisson(hi float64) float64 { return max(math.Sqrt(max(hi, 1)), 1) }

func (d *Detector) rate(p *profile, c *evctx) {
	n := &p.n
	c10 := p.windowSum(10, func(i int64) float64 { return float64(n.SecCalls[i]) })
	c60 := p.windowSum(60, func(i int64) float64 { return float64(n.SecCalls[i]) })
	l := d.levelOf(p, c, n.BaseCalls, lvCalls, d.cfg.RuleCallsPerMinute, poisson)
	// Ten seconds holding more calls than a busy minute is caught before the minute fills.
	x10, x60 := l.exceed(c10), l.exceed(c60)
	obs, win := c60, int64(60e9)
	if x10 > x60 {
		obs, win = c10, 10e9
	}
	r := &d.res[cRate]
	*r = result{v: grade(max(x10, x60), 1, 2), feature: "calls_per_window", obs: obs, base: l.hi, src: l.src,
		ws: c.now - win, we: c.now, x: max(x10, x60)}
	if p.group != nil && r.v > 0 { // ranking costs a search: only for evidence that is shown
		r.pct, r.hasPeer = p.group.percentile(lvCalls, c60)
	}
}

func (d *Detector) volume(p *profile, c *evctx) {
	n := &p.n
	r60 := p.windowSum(60, func(i int64) float64 { return float64(n.SecResp[i]) })
	var b baseline
	src := srcSelf
	switch {
	case c.conf >= d.cfg.ConfidenceGate && n.BaseRp.N >= 5:
		b = n.BaseRp
	case d.peerOK(p):
		b, src = p.group.base[lvResp], srcPeers
	default:
		return // no baseline for bytes: volume alone is not judged
	}
	lx := math.Log1p(r60)
	z := robustZ(lx, float64(b.Med), float64(b.MAD), 0.5)
	r := &d.res[cVolume]
	*r = result{v: grade(z, 3, 3), feature: "response_bytes_per_min", obs: r60, base: math.Expm1(float64(b.Med)), src: src,
		ws: c.now - 60e9, we: c.now, x: z}
	if p.group != nil && r.v > 0 { // ranking costs a search: only for evidence that is shown
		r.pct, r.hasPeer = p.group.percentile(lvResp, lx)
	}
}

// novelty is how surprising any first use is for p: Good–Turing's 1 − P(new value) when p's own
// history is trusted, a fixed peer-based weight when only its peers are, and a weight too small
// to conclude anything when neither is.
func (d *Detector) novelty(p *profile, cat int, c *evctx) (float64, string, bool) {
	if c.conf >= d.cfg.ConfidenceGate {
		t := &p.cats[cat]
		return 1 - float64(t.Distinct)/(float64(p.n.Calls)+float64(t.Distinct)), srcSelf, false
	}
	if d.peerOK(p) {
		return 0.7, srcPeers, false
	}
	return 0.5 * c.conf, srcSelf, true
}

func (d *Detector) newValue(p *profile, c *evctx) {
	if p.n.Calls == 0 {
		return // the first call: everything is new, nothing is unusual
	}
	r := &d.res[cNewValue]
	// A new client, user agent or network alone is a new laptop or a trip; all of them new at
	// once is someone else's machine: their surprises combine (noisy-or) on the strongest one.
	conn, connNew := 1.0, 0
	for _, kv := range d.vals {
		if kv.at >= 0 {
			continue
		}
		name := d.buf[kv.from:kv.to]
		nov, src, thin := d.novelty(p, kv.cat, c)
		rarity, users, members := 1.0, 0, 0
		if d.peerOK(p) {
			users, members = p.group.used(kv.cat, name), p.group.peers(p)
			rarity = min(max(1-float64(users)/float64(members)/d.cfg.PeerRareFraction, 0), 1)
		}
		v := 100 * catWeight[kv.cat] * nov * rarity
		if kv.cat == catClient || kv.cat == catAgent || kv.cat == catNetwork {
			conn *= 1 - v/100
			connNew++
			if connNew > 1 {
				v = max(v, 100*(1-conn))
			}
		}
		if v > r.v {
			*r = result{v: v, feature: catNames[kv.cat], obs: float64(users), base: float64(members), src: src,
				ws: p.n.FirstSeen, we: c.now, a: string(name), noFinding: thin, x: float64(connNew)}
			if members > 0 {
				r.pct, r.hasPeer = 100*float64(users)/float64(members), true
			}
		}
	}
}

func (d *Detector) sensitivity(p *profile, c *evctx) {
	n := &p.n
	m60 := p.windowSum(60, func(i int64) float64 { return float64(n.SecSens[i]) })
	r := &d.res[cSensitivity]
	// With no baseline at all, the rule is a third of the rule's calls per minute, each of
	// middling sensitivity: a brand-new principal is judged, but not by a hair trigger.
	l := d.levelOf(p, c, n.BaseSens, lvSens, d.cfg.RuleCallsPerMinute/3, func(hi float64) float64 { return max(0.5, 0.5*hi) })
	x := l.exceed(m60)
	*r = result{v: grade(x, 1, 2), feature: "sensitivity_per_min", obs: m60, base: l.hi, src: l.src,
		ws: c.now - 60e9, we: c.now, x: x}
	if p.group != nil && r.v > 0 { // ranking costs a search: only for evidence that is shown
		r.pct, r.hasPeer = p.group.percentile(lvSens, m60)
	}
	// A sensitive class the principal never touched before.
	if !c.sensitive || p.n.Calls == 0 {
		return
	}
	for _, kv := range d.vals {
		if kv.cat != catClass {
			continue
		}
		name := d.buf[kv.from:kv.to]
		cl := string(name)
		if (cl != "pii" && cl != "secret" && cl != "finance") || kv.at >= 0 {
			continue
		}
		nov, src, thin := d.novelty(p, catClass, c)
		rarity := 1.0
		if d.peerOK(p) {
			rarity = min(max(1-float64(p.group.used(catClass, name))/float64(p.group.peers(p))/d.cfg.PeerRareFraction, 0), 1)
		}
		if v := 100 * max(c.sens, 0.6) * nov * rarity; v > r.v {
			*r = result{v: v, feature: "new_sensitive_class", obs: c.sens, base: 0, src: src, ws: p.n.FirstSeen, we: c.now,
				a: cl, noFinding: thin}
		}
	}
}

func (d *Detector) denials(p *profile, c *evctx) {
	if !c.denied {
		return
	}
	n := &p.n
	run := float64(n.DenyRun + 1)
	// Distinct tools denied in the window, this one included.
	var seen [deniedRing + 1]uint64
	k := 0
	if c.toolKV >= 0 {
		v := d.vals[c.toolKV]
		seen[0], k = fnv(d.buf[v.from:v.to]), 1
	}
	for i := range deniedRing {
		if n.DeniedAt[i] > 0 && n.DeniedAt[i] > c.now-int64(d.cfg.DenialWindow) && !slices.Contains(seen[:k], n.DeniedHash[i]) {
			seen[k] = n.DeniedHash[i]
			k++
		}
	}
	distinct := float64(k)
	if run < float64(d.cfg.MinDenials) && distinct < float64(d.cfg.MinDenials) {
		return
	}
	// How likely the run is under the principal's own denial ratio (smoothed towards 5 %).
	rho := (n.DenyW + 0.5) / (n.CallW + 10)
	src := srcSelf
	if n.CallW < 10 {
		src = srcRule
	}
	surprise := max(run, 1.25*distinct) * -math.Log10(rho)
	feature, obs := "denial_run", run
	if 1.25*distinct > run {
		feature, obs = "denied_tools", distinct
	}
	d.res[cDenials] = result{v: grade(surprise, 2, 4), feature: feature, obs: obs, base: rho, src: src,
		ws: c.now - int64(d.cfg.DenialWindow), we: c.now, x: run, y: distinct}
}

func (d *Detector) offHours(p *profile, c *evctx) {
	b := weekBin(c.sec)
	rar := func(u float64) float64 { return math.Exp(-6 * u) }
	uSelf := usage(&p.n.Week, b)
	peer := d.peerOK(p)
	uPeer := math.NaN()
	if peer {
		uPeer = usage(&p.group.week, b)
		peer = !math.IsNaN(uPeer)
	}
	r := &d.res[cOffHours]
	switch {
	case c.conf >= d.cfg.ConfidenceGate && !math.IsNaN(uSelf):
		pr := 0.7
		if peer {
			pr = rar(uPeer)
		}
		*r = result{v: 100 * rar(uSelf) * pr, feature: "week_hour_usage", obs: uSelf, base: 1, src: srcSelf, x: uPeer}
	case peer:
		*r = result{v: 65 * rar(uPeer), feature: "week_hour_usage", obs: uPeer, base: 1, src: srcPeers, x: uPeer}
	default:
		return
	}
	r.ws, r.we, r.y = c.now-3600e9, c.now, float64(b)
	if peer {
		r.pct, r.hasPeer = 100*min(uPeer, 1), true
	}
}

// connKind indexes the categories that say how a principal connects (client, user agent,
// network) in Recent; -1 for the others.
func connKind(cat int) int {
	switch cat {
	case catClient:
		return 0
	case catAgent:
		return 1
	case catNetwork:
		return 2
	}
	return -1
}

func (d *Detector) concurrent(p *profile, e *event.Event, c *evctx) {
	n := &p.n
	r := &d.res[cConcurrent]
	weights := [3]float64{0.9, 0.8, 1}
	for _, kv := range d.vals {
		kind := connKind(kv.cat)
		if kind < 0 {
			continue
		}
		name := d.buf[kv.from:kv.to]
		h := fnv(name)
		others := 0
		for _, u := range n.Recent[kind] {
			if u.Hash != 0 && u.Hash != h && u.At > c.now-int64(d.cfg.ConcurrentWindow) {
				others++
			}
		}
		if others == 0 {
			continue
		}
		// The current value's share of the principal's history: a habitual second client is
		// not a stolen token; a value it never used is.
		t := &p.cats[kv.cat]
		share := 0.0
		if i := kv.at; i >= 0 {
			t.decayTotal(c.sec, d.cfg.CategoryHalfLife.Seconds())
			share = min(float64(t.count(i, c.sec, d.cfg.CategoryHalfLife.Seconds())/max(t.Total, 1)), 1)
		}
		v := 100 * weights[kind] * (1 - share) * (1 - share)
		thin := false
		if c.conf < d.cfg.ConfidenceGate {
			v *= 0.5 + 0.5*c.conf
			thin = !d.peerOK(p)
		}
		if v > r.v {
			*r = result{v: v, feature: "concurrent_" + catNames[kv.cat], obs: float64(others + 1), base: share, src: srcSelf,
				ws: c.now - int64(d.cfg.ConcurrentWindow), we: c.now, a: string(name), b: strings.Clone(e.Principal.TokenID), noFinding: thin}
		}
	}
}

func (d *Detector) exfiltration(p *profile, e *event.Event, c *evctx) {
	n := &p.n
	if !c.egress || n.SensAt == 0 || c.now-n.SensAt > int64(d.cfg.ExfilWindow) {
		return
	}
	// P(egress tool | sensitive tool) in the add-½ smoothed transition model.
	prob, vocab := 0.0, float64(len(p.cats[catTool].Entries)+1)
	if n.SensTool >= 0 {
		row := &n.Trans[n.SensTool]
		var sum float64
		for _, x := range row {
			sum += float64(x)
		}
		cnt := 0.0
		if c.tool >= 0 {
			cnt = float64(row[c.tool])
		}
		prob = (cnt + 0.5) / (sum + 0.5*vocab)
	} else {
		prob = 1 / vocab
	}
	gap := float64(c.now-n.SensAt) / float64(d.cfg.ExfilWindow)
	// A habitual read-then-send (a report mailed every week) is not exfiltration: the value
	// is the transition's surprise in the principal's own model, full for a transition it
	// takes at most once in a hundred (one it never took, once its history has some fifty
	// moves from the tool), none for one it takes one time in ten or more.
	surprise := min(1, max(0, -math.Log10(prob)-1))
	// And one record mailed after one read is not a haul: the value grows with the run of
	// sensitive reads before the egress, full from six on.
	haul := min(1, float64(n.SensRun+2)/8)
	v := 100 * float64(n.SensVal) * surprise * (1 - 0.3*gap) * haul
	d.res[cExfil] = result{v: v, feature: "read_to_egress_probability", obs: prob, base: 1 / vocab, src: srcSelf,
		ws: n.SensAt, we: c.now, a: p.sensName, b: strings.Clone(e.MCP.Tool), x: float64(n.SensVal), y: float64(n.SensRun)}
}

func (d *Detector) drift(p *profile, c *evctx) {
	n := &p.n
	r := &d.res[cDrift]
	for m, obs := range [2]float64{float64(n.HourSens), float64(n.HourDist)} {
		own := [2]baseline{n.BaseHSens, n.BaseHDist}[m]
		cc := *c
		cc.conf = d.confidence(p)
		if own.N < 3 { // fewer closed hours than the minute baselines need
			cc.conf = 0
		}
		l := d.levelOf(p, &cc, own, lvSensHour+m, math.Inf(1), func(hi float64) float64 { return max(math.Sqrt(max(hi, 1)), 2) })
		if l.src == srcRule {
			return // no hourly baseline yet: nothing drifts from nothing
		}
		// The open hour's running count, judged as if the hour ended now (it only grows).
		x := l.exceed(obs)
		if v := grade(x, 1, 2); v > r.v {
			*r = result{v: v, feature: [2]string{"sensitive_reads_per_hour", "distinct_resources_per_hour"}[m], obs: obs, base: l.hi,
				src: l.src, ws: n.HourHead * 3600e9, we: c.now, x: x}
			if p.group != nil && r.v > 0 {
				r.pct, r.hasPeer = p.group.percentile(lvSensHour+m, obs)
			}
		}
	}
}

// cadenceOver is the coefficient of variation of the gaps between the last k sensitive reads of
// session sess and one at now, the time of the oldest, and whether there are enough of them.
// Only slow cadences count (a mean gap of 10 s to 10 min): a fast steady pace is the rate
// check's.
func (d *Detector) cadenceOver(p *profile, now int64, sess uint32, k int) (cv float64, first int64, ok bool) {
	gaps := d.gaps[:k] // scratch: a local array escapes through gonum
	if first, ok = p.sens.gaps(now, sess, gaps); !ok {
		return 0, 0, false
	}
	mean, std := stat.MeanStdDev(gaps, nil)
	if mean < 10 || mean > 600 {
		return 0, 0, false
	}
	return std / mean, first, true
}

// cadenceTiers judge the spread (coefficient of variation) of the gaps between the last k
// sensitive reads. For a person whose reads come at random (exponential gaps, a spread of 1),
// a spread at or below full happens about once in 10^5 over ten gaps, 2·10^-5 over six and
// 3·10^-5 over four (at none: 6·10^-4, 6·10^-4 and 3·10^-4). A script's steady pace, even with
// seconds of jitter, stays near 0.03. The longer cadences conclude; the six-gap one only when
// it is as steady as a clock; the shortest only raises the score while the reads accumulate.
var cadenceTiers = [...]struct {
	k                  int
	full, none, weight float64
	concludes          bool // at full steadiness
}{
	{cadenceN, 0.2, 0.35, 1, true},
	{6, 0.1, 0.2, 0.6, true},
	{4, 0.03, 0.06, 0.3, false},
}

// cadenceMature cadences make a principal's own usual spread trustworthy.
const cadenceMature = 20

// lowSlow judges the cadence of sensitive reads: a person reads in bursts and pauses (a gap
// spread near or above 1), a script paging slowly through data reads at a steady pace. A steady
// cadence is suspicious only for a principal whose own cadence is not steady.
func (d *Detector) lowSlow(p *profile, c *evctx) {
	n := &p.n
	if !c.sensitive {
		return
	}
	// While the principal's own cadence is thin (fewer than cadenceMature judged), its usual
	// spread leans towards a person's (1), and a steady pace only raises the score.
	usual, src, thin := float64(n.CadenceCV), srcSelf, n.CadenceN < cadenceMature
	if thin {
		w := float64(n.CadenceN) / cadenceMature
		usual, src = w*usual+(1-w), srcRule
	}
	r := &d.res[cDrift]
	for _, tier := range cadenceTiers {
		cv, first, ok := d.cadenceOver(p, c.now, c.sess, tier.k)
		if !ok {
			continue
		}
		// How far below its usual spread, in units of the spread a steady pace leaves (0.35).
		x := (usual - cv) / 0.35
		steady := min(1, (tier.none-cv)/(tier.none-tier.full))
		if steady <= 0 || x <= 0 {
			continue
		}
		conclusive := tier.concludes && (tier.k == cadenceN && !thin || steady == 1)
		weight := tier.weight
		if conclusive {
			weight = 1
		}
		if v := weight * steady * grade(x, 0.5, 1); v > r.v {
			*r = result{v: v, feature: "sensitive_read_cadence_cv", obs: cv, base: usual, src: src, ws: first, we: c.now, x: x,
				y: float64(tier.k + 1), a: "cadence", noFinding: !conclusive}
		}
	}
}

func (d *Detector) egressPII(p *profile, e *event.Event, c *evctx) {
	if !c.egress || (c.pii == 0 && !c.piiClass) {
		return
	}
	n := &p.n
	// How often this principal sends personal data out (smoothed towards 10 %).
	rho := (n.EgressPIIW + 0.1) / (n.EgressW + 1)
	strength := 0.85
	if c.secret {
		strength = 1
	}
	strength = min(1, strength+0.05*math.Log2(1+float64(c.pii)))
	src := srcSelf
	if n.EgressW < 5 {
		src = srcRule
	}
	v := 100 * strength * (1 - rho)
	feature, base := "pii_in_egress_args", rho
	// A principal that mails a customer's address every day still does not mail forty of them:
	// the count is judged against its usual count too.
	usual := float64(n.EgressPIIMean)
	if x := (float64(c.pii) - max(3*usual, 3)) / max(usual, 1); src == srcSelf && grade(x, 0, 4) > v {
		v, feature, base = grade(x, 0, 4), "pii_values_in_egress_call", usual
	}
	d.res[cEgressPII] = result{v: v, feature: feature, obs: float64(c.pii), base: base,
		src: src, ws: c.now, we: c.now, a: strings.Clone(e.MCP.Tool), b: strings.Clone(string(e.Outcome.Result))}
}

func (d *Detector) rugPull(c *evctx, tool string, v float64) {
	d.res[cRugPull] = result{v: v, feature: "tool_definition_changed", obs: 1, base: 0, src: srcRule, ws: c.now, we: c.now,
		a: strings.Clone(tool), x: v}
}

// emit turns the results into signals (decaying from their peak, falling to 0 when the
// evidence runs out) and findings.
func (d *Detector) emit(ent *entry, e *event.Event, c *evctx, out *detect.Output) {
	p := &ent.Value
	n := &p.n
	p.ids[n.IDNext], n.IDAt[n.IDNext] = detect.MakeEventID(e.ID), c.now
	n.IDNext = (n.IDNext + 1) % idSample
	hl := float64(d.cfg.SignalHalfLife)
	for ci := range nChecks {
		if d.disabled[ci] {
			continue
		}
		r := &d.res[ci]
		vNow := math.Round(min(max(r.v, 0), 100)*10) / 10
		if vNow < 1 {
			vNow = 0
		}
		held := float64(n.PeakV[ci]) * math.Exp2(-float64(c.now-n.PeakT[ci])/hl)
		newPeak := vNow >= held
		if newPeak {
			n.PeakV[ci], n.PeakT[ci] = float32(vNow), c.now
			n.PeakObs[ci], n.PeakBase[ci] = float32(r.obs), float32(r.base)
			held = vNow
		}
		held = math.Round(held*10) / 10
		if held < 1 {
			held = 0
		}
		last := float64(n.LastV[ci])
		if vNow == 0 && (last == 0 || (held > 0 && math.Abs(held-last) < 1)) {
			continue
		}
		n.LastV[ci] = float32(held)
		n.Ever |= 1 << ci
		sig := detect.Signal{Detector: Name, Tenant: ent.Key.tenant, Subject: ent.Key.sub, Check: checks[ci].Name,
			Time: time.Unix(0, c.now).UTC(), Component: checks[ci].Component, Value: held}
		if vNow > 0 {
			words := detect.Words{Say: sayers[ci], A: r.a, B: r.b, X: r.x, Y: r.y}
			sig.Evidence = detect.Evidence{Feature: r.feature, Observed: r.obs, Baseline: r.base, BaselineSource: r.src,
				PeerPercentile: r.pct, HasPeer: r.hasPeer, Words: words,
				WindowStart: time.Unix(0, r.ws).UTC(), WindowEnd: time.Unix(0, r.we).UTC(), EventIDs: p.eventIDs(ci, r.ws)}
			if newPeak {
				w := p.peak[ci]
				if w == nil {
					w = new(peakWords)
					p.peak[ci] = w
				}
				*w = peakWords{feature: r.feature, src: r.src, obs: r.obs, base: r.base, span: r.we - r.ws, hasPeer: r.hasPeer, words: words}
			}
		} else {
			sig.Evidence = d.decaying(p, ci, c.now)
		}
		out.Signals = append(out.Signals, sig)
		if vNow >= d.cfg.FindingLevel && !r.noFinding &&
			(n.HasFinding&(1<<ci) == 0 || c.now-n.FindingAt[ci] >= int64(d.cfg.Cooldown)) {
			n.HasFinding |= 1 << ci
			n.FindingAt[ci] = c.now
			out.Findings = append(out.Findings, d.finding(ci, e, p, c, &sig))
		}
	}
	d.schedule(ent)
}

// eventIDs samples the latest events: just this one for point checks, a few for windows.
// decaying is the evidence of check ci's signal while it decays from its peak with no new
// evidence: the peak's numbers, and since when.
func (d *Detector) decaying(p *profile, ci int, now int64) detect.Evidence {
	n := &p.n
	var feature, why string
	if w := p.peak[ci]; w != nil {
		feature, why = w.feature, w.text()
	}
	if feature == "" {
		feature, why = checks[ci].Name+"_peak", "its last evidence"
	}
	return detect.Evidence{Feature: feature, Observed: float64(n.PeakObs[ci]), Baseline: float64(n.PeakBase[ci]),
		Detail: fmt.Sprintf("decaying (half-life %s) from %.1f at %s: %s", d.cfg.SignalHalfLife, n.PeakV[ci],
			time.Unix(0, n.PeakT[ci]).UTC().Format(time.RFC3339), why),
		WindowStart: time.Unix(0, n.PeakT[ci]).UTC(), WindowEnd: time.Unix(0, now).UTC()}
}

func (p *profile) eventIDs(ci int, from int64) []detect.EventID {
	k := 1
	if windowNs[ci] > 0 || ci == cDenials || ci == cDrift {
		k = 5
	}
	ids := make([]detect.EventID, 0, k)
	for i := k; i >= 1; i-- {
		j := (int(p.n.IDNext) + idSample - i) % idSample
		if id := p.ids[j]; !id.IsZero() && (i == 1 || p.n.IDAt[j] > from) {
			ids = append(ids, id)
		}
	}
	return ids
}

// sayers word each check's evidence (see [detect.Words]): the numbers stay in the signal and
// the sentence is formatted only for evidence that is published, or for a peak a checkpoint or
// a decaying signal shows.
var sayers = [nChecks]func(ev detect.Evidence) string{
	cRate: func(ev detect.Evidence) string {
		return fmt.Sprintf("%.0f calls in %s against a busy minute of %.3g calls (%s), %.1f spreads above", ev.Observed,
			ev.WindowEnd.Sub(ev.WindowStart), ev.Baseline, ev.BaselineSource, ev.Words.X)
	},
	cVolume: func(ev detect.Evidence) string {
		return fmt.Sprintf("%.0f response bytes in the last minute against a normal of %.0f/min (%s)", ev.Observed, ev.Baseline, ev.BaselineSource)
	},
	cNewValue: func(ev detect.Evidence) string {
		if ev.HasPeer {
			if ev.Words.X > 1 {
				return fmt.Sprintf("first use of %s %q with %.0f new connection attributes at once (client, user agent, network); used by %.0f of %.0f peers",
					ev.Feature, ev.Words.A, ev.Words.X, ev.Observed, ev.Baseline)
			}
			return fmt.Sprintf("first use of %s %q; used by %.0f of %.0f peers", ev.Feature, ev.Words.A, ev.Observed, ev.Baseline)
		}
		return fmt.Sprintf("first use of %s %q; peer group too small to compare", ev.Feature, ev.Words.A)
	},
	cSensitivity: func(ev detect.Evidence) string {
		if ev.Feature == "new_sensitive_class" {
			return fmt.Sprintf("first touch of %s data (sensitivity %.2f)", ev.Words.A, ev.Observed)
		}
		return fmt.Sprintf("sensitivity mass %.2f in the last minute against a busy minute of %.2f (%s), %.1f spreads above", ev.Observed, ev.Baseline, ev.BaselineSource, ev.Words.X)
	},
	cDenials: func(ev detect.Evidence) string {
		return fmt.Sprintf("%.0f consecutive denials, %.0f distinct tools denied in the window; normal denial ratio %.3f", ev.Words.X, ev.Words.Y, ev.Baseline)
	},
	cOffHours: func(ev detect.Evidence) string {
		return fmt.Sprintf("activity in week hour %.0f, used %.2f× as much as a typical hour by the principal (peers %.2f×)", ev.Words.Y, ev.Observed, ev.Words.X)
	},
	cConcurrent: func(ev detect.Evidence) string {
		tok := ""
		if ev.Words.B != "" {
			tok = " with token " + ev.Words.B
		}
		return fmt.Sprintf("%s used from %.0f distinct %ss within the window%s; %q has a %.0f%% share of its history",
			"principal", ev.Observed, strings.TrimPrefix(ev.Feature, "concurrent_"), tok, ev.Words.A, 100*ev.Baseline)
	},
	cExfil: func(ev detect.Evidence) string {
		return fmt.Sprintf("egress call %q after %.0f sensitive reads in a row, the last of %q (sensitivity %.2f); transition probability %.3f",
			ev.Words.B, ev.Words.Y, ev.Words.A, ev.Words.X, ev.Observed)
	},
	cDrift: func(ev detect.Evidence) string {
		if ev.Words.A == "cadence" {
			return fmt.Sprintf("the last %.0f sensitive reads came at a steady pace (gap spread %.2f) against its usual %.2f: a script paging slowly, not a person",
				ev.Words.Y, ev.Observed, ev.Baseline)
		}
		return fmt.Sprintf("%s: %.0f this hour against a busy hour of %.3g (%s), %.1f spreads above", ev.Feature, ev.Observed, ev.Baseline, ev.BaselineSource, ev.Words.X)
	},
	cEgressPII: func(ev detect.Evidence) string {
		if ev.Feature == "pii_values_in_egress_call" {
			return fmt.Sprintf("%.0f personal or secret values in the arguments of egress call %q (%s); usually %.1f when any", ev.Observed, ev.Words.A, ev.Words.B, ev.Baseline)
		}
		return fmt.Sprintf("%.0f personal or secret values in the arguments of egress call %q (%s); usual share %.2f", ev.Observed, ev.Words.A, ev.Words.B, ev.Baseline)
	},
	cRugPull: func(ev detect.Evidence) string {
		return fmt.Sprintf("definition of tool %q changed from its pin", ev.Words.A)
	},
}

// peakWords are what the evidence of a check's peak is worded from, when its decaying signal is
// published or the profile checkpointed.
type peakWords struct {
	feature, src string
	obs, base    float64
	span         int64 // the window's length, ns
	hasPeer      bool
	words        detect.Words
	detail       string // the sentence once worded, or as restored
}

// text is the peak's sentence, worded on first use.
func (w *peakWords) text() string {
	if w.detail == "" && w.words.Say != nil {
		ev := detect.Evidence{Feature: w.feature, Observed: w.obs, Baseline: w.base, BaselineSource: w.src, HasPeer: w.hasPeer,
			WindowStart: time.Unix(0, 0).UTC(), WindowEnd: time.Unix(0, w.span).UTC(), Words: w.words}
		w.detail = ev.Text()
	}
	return w.detail
}

func (d *Detector) finding(ci int, e *event.Event, p *profile, c *evctx, s *detect.Signal) *event.Finding {
	ev := event.Evidence{Detector: Name, Check: s.Check, Component: string(s.Component), Feature: s.Evidence.Feature,
		Value: s.Value, Observed: s.Evidence.Observed, Baseline: s.Evidence.Baseline, BaselineSource: s.Evidence.BaselineSource,
		Detail: s.Evidence.Text(), WindowStart: s.Evidence.WindowStart, WindowEnd: s.Evidence.WindowEnd, EventIDs: detect.EventIDStrings(s.Evidence.EventIDs)}
	features := map[string]float64{"value": s.Value, "observed": ev.Observed, "baseline": ev.Baseline, "confidence": c.conf}
	if s.Evidence.HasPeer {
		pct := s.Evidence.PeerPercentile
		ev.PeerPercentile = &pct
		features["peer_percentile"] = pct
	}
	return &event.Finding{
		ID: detect.FindingID(Name+"/"+s.Check, e.ID), Time: s.Time, Tenant: e.Tenant, Principal: e.Principal,
		Detector: Name, Check: s.Check, Score: s.Value, Severity: int(math.Round(s.Value / 10)),
		Summary:     event.PrincipalID(e.Principal) + ": " + ev.Detail,
		WindowStart: ev.WindowStart, WindowEnd: ev.WindowEnd, Features: features, EventIDs: ev.EventIDs,
		Evidence: []event.Evidence{ev}, Tags: slices.Clone(checkTags[ci]),
	}
}

// peers is how many mature members other than p the group has (at least 1).
func (g *peerGroup) peers(p *profile) int {
	n := g.mature
	if p.n.Mature {
		n--
	}
	return max(n, 1)
}
