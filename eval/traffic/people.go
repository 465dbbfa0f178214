package traffic

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Principal is one person or service of the roster, with its habits.
type Principal struct {
	Index     int
	Subject   string // people; empty for services
	ClientID  string // services' OAuth client id; people's is their client's
	Role      *Role
	PeerGroup string
	Zone      *time.Location
	Office    string // office network prefix
	HomeIP    string // VPN address used from home
	// StartMin is the usual start of the working day in minutes after local midnight; Hours its
	// usual length.
	StartMin int
	Hours    float64
	// Mix is the principal's own action mix: the role's, reweighted, some actions dropped.
	Mix []Weighted
	// Rate is calls per minute inside a burst (0.5–6); Pause the mean pause between bursts.
	Rate  float64
	Pause time.Duration
	// Clients are one or two usual clients; the first is preferred.
	Clients []UsedClient
}

// UsedClient is a client a principal runs.
type UsedClient struct{ Name, Version, UA string }

// ID is the principal's id as events name it ([event.PrincipalID]).
func (p *Principal) ID() string {
	if p.Subject != "" {
		return p.Subject
	}
	return p.ClientID
}

// InEval reports whether p is in the evaluation half of the roster (see [Split]).
func (p *Principal) InEval() bool { return p.Index%2 == 1 }

// roster makes n principals: roles and zones by share, habits drawn per principal.
func roster(seed uint64, n int) []*Principal {
	out := make([]*Principal, 0, n)
	for i := range n {
		r := rng(seed, "principal", i)
		role := &Roles[shareIndex(i, n, len(Roles), func(k int) float64 { return Roles[k].Share })]
		zi := shareIndex(i*7919%n, n, len(zones), func(k int) float64 { return zones[k].Share })
		loc, err := time.LoadLocation(zones[zi].Name)
		if err != nil {
			loc = time.UTC // no tzdata: still deterministic, only less realistic
		}
		p := &Principal{Index: i, Role: role, Zone: loc, Office: zones[zi].Office,
			HomeIP:   fmt.Sprintf("100.64.%d.%d", r.IntN(250)+1, r.IntN(250)+2),
			StartMin: 8*60 + r.IntN(150), Hours: 7.5 + r.Float64()*2,
			Rate: 0.5 + r.Float64()*5.5, Pause: time.Duration(5+r.IntN(25)) * time.Minute}
		p.PeerGroup = fmt.Sprintf("%s-%s", role.Name, zoneTag(zones[zi].Name))
		if role.Service {
			p.ClientID = fmt.Sprintf("svc-%s-%03d", role.Name, i)
			p.PeerGroup = "batch-jobs"
			p.Clients = []UsedClient{{serviceClient.Name, serviceClient.Version, serviceClient.UA}}
			p.Rate = 12 + r.Float64()*12
		} else {
			p.Subject = fmt.Sprintf("%s.%03d", role.Name, i)
			for k := range 1 + r.IntN(2) {
				c := clients[(r.IntN(len(clients))+k)%len(clients)]
				v := c.Versions[r.IntN(len(c.Versions))]
				p.Clients = append(p.Clients, UsedClient{c.Name, v, fmt.Sprintf(c.UA, v)})
			}
			p.ClientID = p.Clients[0].Name
		}
		for _, m := range role.Mix {
			if r.Float64() < 0.15 && len(p.Mix) > 0 { // a habit this principal does not have
				continue
			}
			p.Mix = append(p.Mix, Weighted{m.Action, m.W * math.Exp(0.6*r.NormFloat64())})
		}
		out = append(out, p)
	}
	return out
}

// shareIndex assigns item i of n to one of k classes so that class j gets about share(j) of n,
// interleaved so every class appears in both halves of the roster.
func shareIndex(i, n, k int, share func(int) float64) int {
	x := (float64(i) + 0.5) / float64(n)
	// Stride through the unit interval so neighbours differ in class.
	x = math.Mod(x*37, 1)
	for j := range k {
		if x -= share(j); x < 0 {
			return j
		}
	}
	return k - 1
}

func zoneTag(z string) string {
	switch z {
	case "Europe/Berlin":
		return "emea"
	case "America/New_York":
		return "amer"
	}
	return "apac"
}

// clean generates p's clean traffic over [from, to).
func clean(seed uint64, p *Principal, from, to time.Time) []Call {
	g := &session{seed: seed, p: p}
	for day := from.In(p.Zone); day.Before(to); day = day.AddDate(0, 0, 1) {
		dayNo := int(day.Sub(from).Hours() / 24)
		r := rng(seed, "day", p.Index, dayNo)
		g.r, g.token = r, token(seed, p, dayNo)
		midnight := time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, p.Zone)
		if p.Role.Service {
			g.service(midnight, midnight.AddDate(0, 0, 1), from, to)
			continue
		}
		if wd := midnight.Weekday(); wd == time.Saturday || wd == time.Sunday || r.Float64() < 0.07 {
			continue // weekend, or a day off
		}
		start := midnight.Add(time.Duration(p.StartMin)*time.Minute + time.Duration(r.NormFloat64()*20)*time.Minute)
		end := start.Add(time.Duration((p.Hours + r.NormFloat64()*0.5) * float64(time.Hour)))
		g.workday(start, end, from, to)
	}
	return g.out
}

// session is the state of one principal's day of clean traffic.
type session struct {
	seed  uint64
	p     *Principal
	r     *rand.Rand
	token string
	id    string
	n     int // sessions started
	ci    int // client of the session
	ip    string
	out   []Call
}

func (g *session) newSession(t time.Time) {
	g.n++
	g.id = fmt.Sprintf("s-%d-%d-%d", g.p.Index, t.Unix()/86400, g.n)
	g.ci = 0
	if len(g.p.Clients) > 1 && g.r.Float64() < 0.2 {
		g.ci = 1
	}
	g.ip = fmt.Sprintf("%s.%d", g.p.Office, 10+g.p.Index%240)
	if g.r.Float64() < 0.2 {
		g.ip = g.p.HomeIP
	}
}

// workday: bursts of a few calls at the principal's pace, pauses between them; a pause over 30
// minutes starts a new MCP session, which begins with tools/list.
func (g *session) workday(start, end, from, to time.Time) {
	p, r := g.p, g.r
	t := start
	g.newSession(t)
	first := true
	for t.Before(end) {
		a := pick(r, p.Mix)
		if first {
			g.emit(t, Action{Method: "tools/list", Server: a.Server}, from, to)
			t = t.Add(time.Duration(1+r.IntN(3)) * time.Second)
			first = false
		}
		for range 1 + int(r.ExpFloat64()*3) {
			g.emit(t, a, from, to)
			gap := expDur(r, time.Duration(60/p.Rate*float64(time.Second)))
			t = t.Add(max(gap, 2*time.Second))
			if r.Float64() < 0.5 {
				a = pick(r, p.Mix)
			}
		}
		pause := max(expDur(r, p.Pause), time.Minute)
		t = t.Add(pause)
		if pause > 30*time.Minute {
			g.newSession(t)
			first = true
		}
	}
}

// service: a batch job every 10–20 minutes, around the clock, of 4–12 calls a few seconds apart.
func (g *session) service(dayStart, dayEnd, from, to time.Time) {
	r := g.r
	period := time.Duration(10+g.p.Index%11) * time.Minute
	for t := dayStart.Add(time.Duration(r.IntN(600)) * time.Second); t.Before(dayEnd); t = t.Add(period + time.Duration(r.NormFloat64()*30)*time.Second) {
		g.newSession(t)
		g.ip = fmt.Sprintf("10.40.0.%d", 10+g.p.Index%200)
		c := t
		for range 4 + r.IntN(9) {
			g.emit(c, pick(r, g.p.Mix), from, to)
			c = c.Add(time.Duration(60/g.p.Rate*float64(time.Second)) + time.Duration(r.IntN(1000))*time.Millisecond)
		}
	}
}

// emit appends the call of a at t when t is inside [from, to).
func (g *session) emit(t time.Time, a Action, from, to time.Time) {
	if t.Before(from) || !t.Before(to) {
		return
	}
	c := g.p.Clients[g.ci]
	g.out = append(g.out, g.p.call(g.r, t, a, callCtx{token: g.token, session: g.id, client: c, ip: g.ip}))
}

// callCtx is who-and-where of a call.
type callCtx struct {
	token, session string
	client         UsedClient
	ip             string
}

// call builds p's call of a at t, with usual arguments and a response of the usual size.
func (p *Principal) call(r *rand.Rand, t time.Time, a Action, cc callCtx) Call {
	c := Call{Time: t, Principal: p.ID(), Subject: p.Subject, ClientID: p.ClientID, Roles: []string{p.Role.Name},
		TokenID: cc.token, Session: cc.session, Client: cc.client.Name, Version: cc.client.Version,
		UserAgent: cc.client.UA, SrcIP: cc.ip, Method: a.Method, Server: a.Server, Instance: noInstance,
		Latency: time.Duration(lognormal(r, 80, 0.7) * float64(time.Millisecond))}
	switch a.Method {
	case "tools/call":
		c.Tool = a.Name
		c.Arguments = usualArgs(r, p, a)
	case "resources/read":
		c.Resource = resourceURI(r, a)
	case "prompts/get":
		c.Prompt = a.Name
		c.Arguments = []byte(`{"topic":"weekly numbers"}`)
	case "tools/list":
		a.RespMedian = 3000
	}
	c.RespBytes = int(lognormal(r, float64(max(a.RespMedian, 100)), 0.6))
	return c
}
