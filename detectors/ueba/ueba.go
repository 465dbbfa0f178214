package ueba

import (
	"container/heap"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/detectors/internal/intern"
	"github.com/mcpwatch/mcpwatch/detectors/internal/lru"
	"github.com/mcpwatch/mcpwatch/event"
)

// Name is the detector's name in findings, signals, metrics and profiles.
const Name = "ueba"

// Check names, in [Checks] order.
const (
	cRate = iota
	cVolume
	cNewValue
	cSensitivity
	cDenials
	cOffHours
	cConcurrent
	cExfil
	cDrift
	cEgressPII
	cRugPull
)

var checks = [nChecks]detect.Check{
	{Name: "rate", Component: detect.Frequency},
	{Name: "volume", Component: detect.Frequency},
	{Name: "new_value", Component: detect.Risk},
	{Name: "sensitivity", Component: detect.Sensitivity},
	{Name: "denials", Component: detect.Risk},
	{Name: "off_hours", Component: detect.Risk},
	{Name: "concurrent", Component: detect.Risk},
	{Name: "exfiltration", Component: detect.Sensitivity},
	{Name: "drift", Component: detect.Risk},
	{Name: "egress_pii", Component: detect.Sensitivity},
	{Name: "rug_pull", Component: detect.Risk},
}

// checkTags are the MITRE ATT&CK / ATLAS techniques each check's findings point at.
var checkTags = [nChecks][]string{
	{"ueba", "T1119", "AML.T0024"},          // automated collection; exfiltration via inference API
	{"ueba", "T1030", "T1567"},              // data transfer size; exfiltration over web service
	{"ueba", "T1078"},                       // valid accounts used unusually
	{"ueba", "T1213"},                       // data from information repositories
	{"ueba", "T1526", "T1069"},              // discovery by probing
	{"ueba", "T1078"},                       // valid accounts at unusual times
	{"ueba", "T1550", "T1528"},              // stolen application access token
	{"ueba", "T1048", "T1567", "AML.T0057"}, // exfiltration; LLM data leakage
	{"ueba", "T1030", "T1119"},              // low-and-slow collection
	{"ueba", "T1048", "AML.T0057"},          // personal data sent out
	{"ueba", "AML.T0010", "T1195"},          // supply chain: tool definition changed
}

// Checks returns the detector's checks, for wiring and docs.
func Checks() []detect.Check { return append([]detect.Check(nil), checks[:]...) }

func checkIndex(name string) int {
	for i, c := range checks {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// lateNs: events this much older than their principal's newest are not judged.
const lateNs = int64(time.Minute)

type key struct{ tenant, sub string }

type entry = lru.Entry[key, profile]

// Detector is the UEBA detector: per-principal behaviour profiles and the checks over them. It
// implements [detect.Stateful]. It is not safe for concurrent use.
type Detector struct {
	cfg      Config
	disabled [nChecks]bool
	egress   []string // lower-cased globs

	principals *lru.Table[key, profile]
	tenants    intern.Table // the keys' tenants, shared
	groups     map[groupKey]*peerGroup
	deadlines  deadlineHeap
	// dirty are the principals changed since their last checkpoint, by when the next is due:
	// a checkpoint pops what is due instead of scanning every changed principal per batch.
	dirty deadlineHeap
	stats detect.Stats
	names interner // category values, shared by the profiles

	// scratch, reused per event
	buf     []byte
	vals    []kv
	res     [nChecks]result
	scratch []float64
	xs      []float64
	gaps    [cadenceN]float64
}

// kv is one categorical value of the event being judged: buf[from:to], and its index in the
// profile's category table before learning (-1 when new), looked up once per event.
type kv struct {
	cat      int
	from, to int
	at       int
}

// New returns a UEBA detector, or the config's validation error.
func New(cfg Config) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ueba: %w", err)
	}
	d := &Detector{cfg: cfg, principals: lru.New[key, profile](), groups: map[groupKey]*peerGroup{}}
	for _, n := range cfg.Disabled {
		d.disabled[checkIndex(n)] = true
	}
	for _, g := range cfg.EgressTools {
		d.egress = append(d.egress, strings.ToLower(g))
	}
	return d, nil
}

// Info names the detector and its checks.
func (d *Detector) Info() detect.Info { return detect.Info{Name: Name, Checks: Checks()} }

// Stats returns counters of what the detector did.
func (d *Detector) Stats() detect.Stats {
	s := d.stats
	s.Principals = d.principals.Len()
	return s
}

// Observe judges e against its principal's profile and peers, emits the checks' signals and
// findings, and only then learns e into the profile.
func (d *Detector) Observe(e *event.Event, out *detect.Output) {
	if !detect.ValidTime(e.Time) || e.Source != event.SourceMCP || e.MCP == nil {
		d.stats.Ignored++
		return
	}
	t := e.Time.UnixNano()
	k := key{e.Tenant, event.PrincipalID(e.Principal)}
	ent := d.principals.Get(k)
	if ent == nil {
		ent = d.track(k, t)
	} else if t < ent.Value.n.LastSeen-lateNs {
		d.stats.Late++
		return
	} else {
		d.principals.Touch(ent)
	}
	d.stats.Counted++
	p := &ent.Value
	now := max(t, p.n.LastSeen)
	d.join(p, e)
	d.advance(p, now)

	var c evctx
	d.observe(p, e, now, &c)
	d.judge(p, e, &c)
	d.learn(p, e, &c)
	d.emit(ent, e, &c, out)
	d.markDirty(ent)
}

// evctx is what Observe knows about the event being judged.
type evctx struct {
	now, sec  int64
	req, call bool
	conf      float64
	sens      float64
	sensitive bool
	egress    bool
	denied    bool
	pii       int
	piiClass  bool // pii or secret class
	secret    bool
	tool      int // index of the tool in the profile before learning, -1 when new or none
	toolKV    int // index in vals of the tool, -1 when none
	distNew   bool
	sess      uint32 // sessionHash of the event's MCP session
}

func (d *Detector) track(k key, t int64) *entry {
	if d.principals.Len() >= d.cfg.MaxPrincipals {
		d.remove(d.principals.Oldest())
		d.stats.EvictedCapacity++
	}
	ent := d.principals.Add(key{d.tenants.Copy(k.tenant), strings.Clone(k.sub)})
	p := &ent.Value
	p.n.FirstSeen, p.n.LastSeen = t, t
	p.n.PrevTool, p.n.SensTool, p.n.Slot = -1, -1, -1
	return ent
}

func (d *Detector) remove(ent *entry) {
	d.leave(&ent.Value)
	ent.Value.gone = true
	d.principals.Remove(ent)
}

// groupName is the principal's peer group: directory peer group, else department, else first
// role, else its OAuth client.
func groupName(pr *event.Principal) string {
	switch {
	case pr.PeerGroup != "":
		return pr.PeerGroup
	case pr.Department != "":
		return pr.Department
	case len(pr.Roles) > 0 && pr.Roles[0] != "":
		return pr.Roles[0]
	case pr.ClientID != "":
		return "client:" + pr.ClientID
	}
	return ""
}

// join moves p into the peer group its event names, when that changed.
func (d *Detector) join(p *profile, e *event.Event) {
	pr := &e.Principal
	if pr.Department != p.dept {
		p.dept = strings.Clone(pr.Department)
	}
	var same bool
	switch {
	case pr.PeerGroup != "":
		same = p.groupKey == pr.PeerGroup
	case pr.Department != "":
		same = p.groupKey == pr.Department
	case len(pr.Roles) > 0 && pr.Roles[0] != "":
		same = p.groupKey == pr.Roles[0]
	case pr.ClientID != "":
		same = strings.HasPrefix(p.groupKey, "client:") && p.groupKey[7:] == pr.ClientID
	default:
		same = p.groupKey == ""
	}
	if same {
		if p.group == nil && p.groupKey != "" {
			d.enter(p, e.Tenant) // the group table was full before
		}
		return
	}
	d.leave(p)
	p.groupKey = strings.Clone(groupName(pr))
	if p.groupKey != "" {
		d.enter(p, e.Tenant)
	}
}

func (d *Detector) enter(p *profile, tenant string) {
	gk := groupKey{tenant, p.groupKey}
	g := d.groups[gk]
	if g == nil {
		if len(d.groups) >= d.cfg.MaxPeerGroups {
			return
		}
		g = newPeerGroup(groupKey{strings.Clone(tenant), p.groupKey})
		d.groups[g.key] = g
	}
	g.members++
	if p.n.Mature {
		g.mature++
	}
	p.group = g
}

func (d *Detector) leave(p *profile) {
	if g := p.group; g != nil {
		g.members--
		if p.n.Mature {
			g.mature--
		}
		if g.members <= 0 {
			delete(d.groups, g.key)
		}
	}
	p.group, p.n.Slot = nil, -1
}

func weekBin(sec int64) int { return int((sec/3600 + 72) % weekBins) } // the epoch was a Thursday

// advance rolls p's windows forward to now, closing seconds, minutes and hours: closed periods
// become history (learning the past, never the event being judged).
func (d *Detector) advance(p *profile, now int64) {
	n := &p.n
	sec := now / 1e9
	if sec > n.SecHead {
		for s := max(n.SecHead+1, sec-secRing+1); s <= sec; s++ {
			i := s % secRing
			n.SecCalls[i], n.SecSens[i], n.SecResp[i] = 0, 0, 0
		}
		n.SecHead = sec
	}
	if m := sec / 60; m > n.MinHead {
		if n.MinCalls > 0 || n.MinResp > 0 {
			d.closeMinute(p)
		}
		n.MinHead, n.MinCalls, n.MinSens, n.MinResp = m, 0, 0, 0
	}
	if h := sec / 3600; h > n.HourHead {
		if n.HourSens > 0 || n.HourDist > 0 {
			d.closeHour(p)
		}
		if n.WeekHour != 0 {
			f := decay(float64(h-n.WeekHour)*3600, d.cfg.CategoryHalfLife.Seconds())
			for i := range n.Week {
				n.Week[i] *= f
			}
		}
		n.WeekHour = h
		n.HourHead, n.HourSens, n.HourDist = h, 0, 0
		clear(n.HourSet[:])
	}
	if p.group != nil {
		p.group.decayWeek(sec/3600, d.cfg.CategoryHalfLife.Seconds())
	}
}

func (d *Detector) closeMinute(p *profile) {
	n := &p.n
	i := n.RingNext
	n.RingCalls[i] = uint16(min(n.MinCalls, math.MaxUint16))
	n.RingSens[i], n.RingResp[i] = n.MinSens, n.MinResp
	n.RingNext = (n.RingNext + 1) % minRing
	n.RingN = min(n.RingN+1, minRing)
	n.RingPushes++
	// A full recompute sorts the ring: do it while the history is short, then every 16th minute.
	if n.RingN > 16 && n.RingPushes%16 != 0 {
		return
	}
	m := int(n.RingN)
	n.BaseCalls = d.summarizeRing(m, func(j int) float64 { return float64(n.RingCalls[j]) })
	n.BaseSens = d.summarizeRing(m, func(j int) float64 { return float64(n.RingSens[j]) })
	n.BaseRp = d.summarizeRing(m, func(j int) float64 { return math.Log1p(float64(n.RingResp[j])) })
	if g := p.group; g != nil {
		if n.Slot < 0 {
			n.Slot = g.slot()
		}
		// A member's level is its busy minute (p95): the peers' baseline is then a typical
		// member's busy minute, what a level is judged against (see exceed).
		g.setLevel(n.Slot, lvCalls, float64(n.BaseCalls.P95))
		g.setLevel(n.Slot, lvResp, float64(n.BaseRp.Med))
		g.setLevel(n.Slot, lvSens, float64(n.BaseSens.P95))
	}
}

// summarizeRing is the baseline of the first m values of a ring, read through at.
func (d *Detector) summarizeRing(m int, at func(j int) float64) baseline {
	xs := d.xs[:0]
	for j := range m {
		xs = append(xs, at(j))
	}
	d.xs = xs
	return summarize(xs, &d.scratch)
}

func (d *Detector) closeHour(p *profile) {
	n := &p.n
	i := n.HourNext
	n.HourSensR[i], n.HourDistR[i] = n.HourSens, n.HourDist
	n.HourNext = (n.HourNext + 1) % hourRing
	n.HourN = min(n.HourN+1, hourRing)
	m := int(n.HourN)
	n.BaseHSens = d.summarizeRing(m, func(j int) float64 { return float64(n.HourSensR[j]) })
	n.BaseHDist = d.summarizeRing(m, func(j int) float64 { return float64(n.HourDistR[j]) })
	if g := p.group; g != nil && n.Slot >= 0 {
		g.setLevel(n.Slot, lvSensHour, float64(n.BaseHSens.P95))
		g.setLevel(n.Slot, lvDistHour, float64(n.BaseHDist.P95))
	}
}

// confidence is how far p's own history can be trusted, 0–1.
func (d *Detector) confidence(p *profile) float64 {
	span := float64(p.n.LastSeen-p.n.FirstSeen) / float64(d.cfg.FullConfidenceSpan)
	calls := float64(p.n.Calls) / float64(d.cfg.FullConfidenceCalls)
	return min(span, calls, 1)
}

// observe adds e to p's current windows (what "now" is) and extracts its features.
func (d *Detector) observe(p *profile, e *event.Event, now int64, c *evctx) {
	n := &p.n
	c.now, c.sec = now, now/1e9
	c.conf = d.confidence(p)
	c.tool, c.toolKV = -1, -1
	c.sess = sessionHash(e.Correlation.SessionID)
	i := c.sec % secRing
	m := e.MCP
	c.req = m.Direction == event.DirRequest
	d.buf, d.vals = d.buf[:0], d.vals[:0]
	if !c.req {
		if m.Direction == event.DirResponse && e.Size.Response > 0 {
			r := float32(e.Size.Response)
			n.SecResp[i] += r
			n.MinResp += r
		}
		return
	}
	c.call = true
	c.denied = e.Outcome.Result == event.ResultDenied
	if e.Normalized != nil {
		c.sens = min(max(e.Normalized.Sensitivity, 0), 1)
	}
	for _, cl := range e.DataClasses {
		switch cl {
		case "pii":
			c.piiClass = true
		case "secret":
			c.piiClass, c.secret = true, true
		case "egress":
			c.egress = true
		}
	}
	for _, v := range e.PII {
		c.pii += max(v, 0)
	}
	if m.Tool != "" && !c.egress {
		c.egress = d.isEgress(m.Tool)
	}
	classSensitive := c.piiClass
	for _, cl := range e.DataClasses {
		classSensitive = classSensitive || cl == "finance"
	}
	c.sensitive = !c.egress && (c.sens >= 0.5 || classSensitive)

	n.SecCalls[i]++
	n.SecSens[i] += float32(c.sens)
	n.MinCalls++
	n.MinSens += float32(c.sens)

	// Categorical values, into the scratch buffer.
	d.value(catTool, m.Tool)
	if m.Tool != "" {
		c.toolKV = len(d.vals) - 1
	}
	d.value(catServer, e.Target.Server)
	if m.ResourceURI != "" {
		d.value(catResource, resourcePrefix(m.ResourceURI))
	}
	d.value(catPrompt, m.Prompt)
	for _, cl := range e.DataClasses {
		d.value(catClass, cl)
	}
	if m.ClientName != "" {
		from := len(d.buf)
		d.buf = append(d.buf, m.ClientName...)
		d.buf = append(d.buf, '/')
		d.buf = append(d.buf, m.ClientVersion...)
		d.vals = append(d.vals, kv{cat: catClient, from: from, to: len(d.buf)})
	}
	d.value(catAgent, e.Network.UserAgent)
	if a, err := netip.ParseAddr(e.Network.SrcIP); err == nil {
		bits := 24
		if !a.Unmap().Is4() {
			bits = 64
		}
		if pfx, err := a.Unmap().Prefix(bits); err == nil {
			from := len(d.buf)
			d.buf = pfx.AppendTo(d.buf)
			d.vals = append(d.vals, kv{cat: catNetwork, from: from, to: len(d.buf)})
		}
	}
	d.value(catProtocol, m.ProtocolVersion)
	for j := range d.vals {
		v := &d.vals[j]
		v.at = p.cats[v.cat].find(d.buf[v.from:v.to])
	}
	if c.toolKV >= 0 {
		c.tool = d.vals[c.toolKV].at
	}

	// Hourly drift aggregates: sensitive reads and distinct resources read.
	if c.sensitive {
		n.HourSens++
	}
	from := len(d.buf)
	if m.ResourceURI != "" {
		d.buf = append(d.buf, m.ResourceURI...)
	} else {
		d.buf = append(d.buf, m.Tool...)
		d.buf = append(d.buf, 0)
		d.buf = append(d.buf, m.ArgumentsMasked...)
	}
	h := uint32(fnv(d.buf[from:])) | 1
	d.buf = d.buf[:from]
	for j := range hourSet {
		s := &n.HourSet[(int(h)+j)%hourSet]
		if *s == h {
			break
		}
		if *s == 0 {
			*s, c.distNew = h, true
			n.HourDist++
			break
		}
	}
}

func (d *Detector) value(cat int, s string) {
	if s == "" {
		return
	}
	if len(s) > nameMax {
		s = s[:nameMax]
	}
	from := len(d.buf)
	d.buf = append(d.buf, s...)
	d.vals = append(d.vals, kv{cat: cat, from: from, to: len(d.buf)})
}

// resourcePrefix is the scheme, authority and first path segment of a resource URI
// ("s3://finance-data/q3", "file:///reports"), so one directory reads as one value.
func resourcePrefix(uri string) string {
	i := strings.Index(uri, "://")
	if i < 0 {
		if j := strings.IndexByte(uri, '/'); j > 0 {
			return uri[:j]
		}
		return uri
	}
	rest := uri[i+3:]
	a := strings.IndexByte(rest, '/')
	if a < 0 {
		return uri
	}
	seg := rest[a+1:]
	if b := strings.IndexByte(seg, '/'); b >= 0 {
		return uri[:i+3+a+1+b]
	}
	return uri[:i+3+a]
}

// isEgress matches tool against the egress globs, case-insensitively without allocating.
func (d *Detector) isEgress(tool string) bool {
	for _, g := range d.egress {
		if globMatch(g, tool) {
			return true
		}
	}
	return false
}

// globMatch matches s against a pattern whose only wildcard is '*' (any run, '/' included),
// ASCII case-insensitively.
func globMatch(pat, s string) bool {
	px, sx, nextPx, nextSx := 0, 0, -1, -1
	for px < len(pat) || sx < len(s) {
		if px < len(pat) {
			if pat[px] == '*' {
				nextPx, nextSx = px, sx+1
				px++
				continue
			}
			if sx < len(s) && lower(s[sx]) == pat[px] {
				px++
				sx++
				continue
			}
		}
		if nextPx >= 0 && nextSx <= len(s) {
			px, sx = nextPx+1, nextSx
			nextSx++
			continue
		}
		return false
	}
	return true
}

func lower(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

// learn adds e to p's profile and its peer group, after the checks judged it.
func (d *Detector) learn(p *profile, e *event.Event, c *evctx) {
	n := &p.n
	hl := d.cfg.CategoryHalfLife.Seconds()
	n.LastSeen = max(n.LastSeen, c.now)
	n.Events++
	if !n.Mature && d.confidence(p) >= d.cfg.ConfidenceGate {
		n.Mature = true
		if p.group != nil {
			p.group.mature++
		}
	}
	if !c.req {
		if e.Size.Response > 0 {
			n.RespMean, n.RespVar, n.RespW = moments(n.RespMean, n.RespVar, n.RespW, float64(e.Size.Response))
		}
		return
	}
	n.Calls++
	// EWMAs of the call rate, 10 s, 1 min and 1 h half-lives.
	dt := float64(c.now-n.EWMAAt) / 1e9
	for i, h := range [3]float64{10, 60, 3600} {
		n.EWMA[i] = n.EWMA[i]*math.Exp2(-dt/h) + math.Ln2/h
	}
	n.EWMAAt = c.now
	if e.Size.Request > 0 {
		n.ReqMean, n.ReqVar, n.ReqW = moments(n.ReqMean, n.ReqVar, n.ReqW, float64(e.Size.Request))
	}
	// Denials: decayed over a day.
	f := float64(decay(dt, 86400))
	n.CallW, n.DenyW = n.CallW*f+1, n.DenyW*f
	if c.denied {
		n.DenyW++
		n.DenyRun++
		if c.toolKV >= 0 {
			v := d.vals[c.toolKV]
			n.DeniedHash[n.DeniedNext] = fnv(d.buf[v.from:v.to])
		} else {
			n.DeniedHash[n.DeniedNext] = 1
		}
		n.DeniedAt[n.DeniedNext] = c.now
		n.DeniedNext = (n.DeniedNext + 1) % deniedRing
	} else {
		n.DenyRun = 0
	}
	if c.egress {
		n.EgressW = n.EgressW*f + 1
		n.EgressPIIW *= f
		if c.pii > 0 || c.piiClass {
			n.EgressPIIW++
			w := float32(1) / float32(min(n.EgressPIIW, 50))
			n.EgressPIIMean += w * (float32(c.pii) - n.EgressPIIMean)
		}
	}
	// Categories, first uses counted in the peer group, tool transitions.
	g := p.group
	toolIdx := -1
	for _, v := range d.vals {
		name := d.buf[v.from:v.to]
		t := &p.cats[v.cat]
		// The index looked up before judging, unless a value learnt before this one in the event
		// moved or added it.
		at := v.at
		if at < 0 || at >= len(t.Entries) || t.Entries[at].Name != string(name) {
			at = t.find(name)
		}
		first := at < 0
		idx, reused := t.add(at, name, c.now, hl, catCap[v.cat], &d.names)
		if first && g != nil {
			g.addUser(v.cat, name)
		}
		if v.cat == catTool {
			toolIdx = idx
			if reused {
				for j := range maxTools {
					n.Trans[idx][j], n.Trans[j][idx] = 0, 0
				}
				if int(n.PrevTool) == idx {
					n.PrevTool = -1
				}
				if int(n.SensTool) == idx {
					n.SensTool = -1
				}
			}
		}
	}
	if toolIdx >= 0 {
		if n.PrevTool >= 0 {
			row := &n.Trans[n.PrevTool]
			row[toolIdx]++
			if row[toolIdx] > 1000 { // keep the counts bounded and recent
				for j := range row {
					row[j] /= 2
				}
			}
		}
		n.PrevTool = int8(toolIdx)
	}
	if c.sensitive {
		if cv, _, ok := d.cadenceOver(p, c.now, c.sess, cadenceN); ok {
			// The principal's usual cadence spread, learnt after it was judged; a cadence judged
			// too steady teaches it ten times slower, so that a script paging slowly does not
			// become the principal's normal within a few reads.
			w := float32(1) / float32(min(n.CadenceN+1, 50))
			if r := &d.res[cDrift]; r.a == "cadence" && r.v > 0 {
				w /= 10
			}
			n.CadenceCV += w * (float32(cv) - n.CadenceCV)
			n.CadenceN = min(n.CadenceN+1, math.MaxUint16)
		}
		p.sens.add(c.now, c.sess)
		if n.SensAt == 0 || c.now-n.SensAt > int64(d.cfg.ExfilWindow) {
			n.SensRun = 0
		}
		n.SensRun = min(n.SensRun+1, math.MaxUint16)
		n.SensAt, n.SensVal, n.SensTool = c.now, float32(max(c.sens, 0.5)), int8(toolIdx)
		if e.MCP.ResourceURI != "" {
			setClone(&p.sensName, e.MCP.ResourceURI)
		} else {
			setClone(&p.sensName, e.MCP.Tool)
		}
	}
	b := weekBin(c.sec)
	n.Week[b]++
	if g != nil {
		g.week[b]++
		g.changed = true
	}
	// Recent clients, user agents and networks for the concurrent check.
	for _, v := range d.vals {
		kind := connKind(v.cat)
		if kind < 0 {
			continue
		}
		h := fnv(d.buf[v.from:v.to])
		rs := &n.Recent[kind]
		slot := 0
		for j := range rs {
			if rs[j].Hash == h {
				slot = j
				break
			}
			if rs[j].At < rs[slot].At {
				slot = j
			}
		}
		rs[slot] = recentUse{Hash: h, At: c.now}
	}
}

func setClone(dst *string, s string) {
	if len(s) > nameMax {
		s = s[:nameMax]
	}
	if *dst != s {
		*dst = strings.Clone(s)
	}
}

// moments updates a decayed mean and variance (West's weighted incremental form), weighting
// history by a 1000-observation horizon.
func moments(mean, vr, w, x float64) (float64, float64, float64) {
	w = min(w+1, 1000)
	delta := x - mean
	mean += delta / w
	vr += (delta*(x-mean) - vr) / w
	return mean, vr, w
}

type deadline struct {
	at  int64
	ent *entry
}

type deadlineHeap []deadline

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h deadlineHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deadlineHeap) Push(x any)        { *h = append(*h, x.(deadline)) }
func (h *deadlineHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = deadline{}
	*h = old[:len(old)-1]
	return x
}

// Expire retires idle principals (an Expired signal per check they ever signalled) and brings
// decayed checks back to 0 for principals whose evidence ran out while they were silent.
func (d *Detector) Expire(now time.Time, out *detect.Output) {
	nowNs := now.UnixNano()
	cut := nowNs - int64(d.cfg.IdleAfter)
	for ent := d.principals.Oldest(); ent != nil && ent.Value.n.LastSeen <= cut; ent = d.principals.Oldest() {
		p := &ent.Value
		end := p.n.LastSeen + int64(d.cfg.IdleAfter)
		for ci := range nChecks {
			if p.n.Ever&(1<<ci) != 0 {
				out.Signals = append(out.Signals, detect.Signal{Detector: Name, Tenant: ent.Key.tenant, Subject: ent.Key.sub,
					Check: checks[ci].Name, Component: checks[ci].Component, Time: time.Unix(0, end).UTC(), Expired: true,
					Evidence: detect.Evidence{Feature: checks[ci].Name, Detail: "principal idle; profile forgotten",
						WindowStart: time.Unix(0, p.n.LastSeen).UTC(), WindowEnd: time.Unix(0, end).UTC()}})
			}
		}
		d.remove(ent)
		d.stats.EvictedIdle++
	}
	for len(d.deadlines) > 0 && d.deadlines[0].at <= nowNs {
		dl := heap.Pop(&d.deadlines).(deadline)
		p := &dl.ent.Value
		if p.gone {
			continue
		}
		p.inHeap = false
		for ci := range nChecks {
			if p.n.LastV[ci] <= 0 {
				continue
			}
			// Halved since last published, with no event to publish it: publish the decay, so
			// a score falls back while the principal is idle instead of holding its peak.
			if h := d.halvedAt(p, ci); h <= nowNs && h < d.zeroAt(p, ci) {
				held := math.Round(float64(p.n.PeakV[ci])*math.Exp2(-float64(h-p.n.PeakT[ci])/float64(d.cfg.SignalHalfLife))*10) / 10
				p.n.LastV[ci] = float32(held)
				out.Signals = append(out.Signals, detect.Signal{Detector: Name, Tenant: dl.ent.Key.tenant, Subject: dl.ent.Key.sub,
					Check: checks[ci].Name, Component: checks[ci].Component, Time: time.Unix(0, h).UTC(), Value: held,
					Evidence: d.decaying(p, ci, h)})
				continue
			}
			if z := d.zeroAt(p, ci); z <= nowNs {
				p.n.LastV[ci], p.n.PeakV[ci] = 0, 0
				d.markDirty(dl.ent)
				out.Signals = append(out.Signals, detect.Signal{Detector: Name, Tenant: dl.ent.Key.tenant, Subject: dl.ent.Key.sub,
					Check: checks[ci].Name, Component: checks[ci].Component, Time: time.Unix(0, z).UTC(),
					Evidence: detect.Evidence{Feature: checks[ci].Name, Detail: "evidence ran out",
						WindowStart: time.Unix(0, p.n.PeakT[ci]).UTC(), WindowEnd: time.Unix(0, z).UTC()}})
			}
		}
		d.schedule(dl.ent)
	}
}

// windowNs is how long a window check's own value lasts without events.
var windowNs = [nChecks]int64{cRate: 60e9, cVolume: 60e9, cSensitivity: 60e9}

// zeroAt is when check ci's held value falls below 1 with no further evidence.
func (d *Detector) zeroAt(p *profile, ci int) int64 {
	peak := max(float64(p.n.PeakV[ci]), 1)
	return max(p.n.PeakT[ci]+int64(math.Log2(peak)*float64(d.cfg.SignalHalfLife))+1, p.n.LastSeen+windowNs[ci])
}

// halvedAt is when check ci's decaying value reaches half the value last published.
func (d *Detector) halvedAt(p *profile, ci int) int64 {
	peak, target := float64(p.n.PeakV[ci]), float64(p.n.LastV[ci])/2
	if peak <= 0 || target <= 0 {
		return math.MaxInt64
	}
	return p.n.PeakT[ci] + int64(math.Log2(peak/target)*float64(d.cfg.SignalHalfLife)) + 1
}

// schedule queues ent for Expire when one of its checks is above 0.
func (d *Detector) schedule(ent *entry) {
	p := &ent.Value
	if p.inHeap {
		return
	}
	at := int64(math.MaxInt64)
	for ci := range nChecks {
		if p.n.LastV[ci] > 0 {
			at = min(at, d.zeroAt(p, ci), d.halvedAt(p, ci))
		}
	}
	if at != math.MaxInt64 {
		heap.Push(&d.deadlines, deadline{at, ent})
		p.inHeap = true
	}
}

// markDirty queues ent for its next checkpoint, due CheckpointEvery after its last one (at
// once for a principal never checkpointed).
func (d *Detector) markDirty(ent *entry) {
	if n := &ent.Value.n; !n.Dirty {
		n.Dirty = true
		due := int64(0)
		if n.CkptAt != 0 {
			due = n.CkptAt + int64(d.cfg.CheckpointEvery)
		}
		heap.Push(&d.dirty, deadline{due, ent})
	}
}
