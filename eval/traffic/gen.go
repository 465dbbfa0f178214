// Package traffic generates labelled MCP traffic of a simulated company for `mcpwatch eval`:
// days of clean history, then a test phase where clean traffic goes on and attack instances are
// injected on chosen principals. It is seeded and deterministic, and knows nothing of any
// detector: it is the independent side of an evaluation. The output is a stream of [Call]s that
// a driver turns into events (eval's offline driver) or into real MCP calls.
package traffic

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"time"
	_ "time/tzdata" // the roster's time zones, the same on every machine
)

// Call is one MCP request a principal makes, with what the server answers, and its label.
type Call struct {
	Time      time.Time
	Principal string // the principal's id: its subject, or its client id for services
	Subject   string
	ClientID  string // OAuth client id of the credential
	Roles     []string
	TokenID   string
	Session   string
	Client    string // MCP clientInfo name and version
	Version   string
	UserAgent string
	SrcIP     string
	Method    string // tools/call, resources/read, prompts/get, tools/list
	Server    string
	Tool      string
	Resource  string
	Prompt    string
	Arguments json.RawMessage // tools/call and prompts/get
	// RespBytes is the size of the server's answer; Latency how long it took.
	RespBytes int
	Latency   time.Duration
	// ChangedTool, on a tools/list, names a tool whose definition changed under the session.
	ChangedTool string
	// Kind is the attack scenario this call belongs to, "" for clean traffic; Instance indexes
	// [Dataset.Instances], -1 for clean traffic.
	Kind     Kind
	Instance int
}

// Kind of attack scenario.
type Kind string

// Attack scenario kinds.
const (
	Burst      Kind = "burst"      // sudden high rate on usual tools
	Scraping   Kind = "scraping"   // ~5 calls/s sustained on a data tool
	Exfil      Kind = "exfil"      // sensitive reads, then egress
	Probing    Kind = "probing"    // many different tools outside the role, refused
	OffRole    Kind = "off_role"   // a few calls of high-risk tools outside the role
	Stolen     Kind = "stolen"     // the token used concurrently from another client and network
	LowSlow    Kind = "low_slow"   // slowly increasing sensitive reads over an hour
	PIIEgress  Kind = "pii_egress" // personal data in send_email / http_post arguments
	RugPull    Kind = "rug_pull"   // a tool definition changed under the principal's session
	numKinds        = 9
	noInstance      = -1
)

// Kinds lists every scenario kind, in report order.
var Kinds = []Kind{Burst, Scraping, Exfil, Probing, OffRole, Stolen, LowSlow, PIIEgress, RugPull}

// Instance is one injected attack: on whom, what, and when (its first and last call).
type Instance struct {
	ID        int
	Kind      Kind
	Principal string
	Start     time.Time
	End       time.Time
	Calls     int
}

// Split says which half of the roster may be attacked. Principals with an odd index are the
// evaluation half, even ones the tuning half: a detector tuned on Tune runs is judged on Eval runs
// whose attacks land on principals it was never tuned on (and on different seeds).
type Split int

// Splits.
const (
	Eval Split = iota
	Tune
)

// Config of a generated dataset.
type Config struct {
	Seed       uint64
	Principals int           // roster size (default 240)
	History    time.Duration // clean history before the test phase (default 3 days: Monday to Thursday)
	Test       time.Duration // test phase (default 90 min)
	PerKind    int           // instances of each scenario kind (default 3)
	Split      Split
	// TestStart is when the test phase begins (default Thursday 2026-03-19 14:00 UTC: working
	// hours in Berlin and New York).
	TestStart time.Time
}

func (c *Config) defaults() {
	if c.Principals == 0 {
		c.Principals = 240
	}
	if c.History == 0 {
		c.History = 3 * 24 * time.Hour
	}
	if c.Test == 0 {
		c.Test = 90 * time.Minute
	}
	if c.PerKind == 0 {
		c.PerKind = 3
	}
	if c.TestStart.IsZero() {
		c.TestStart = time.Date(2026, 3, 19, 14, 0, 0, 0, time.UTC)
	}
}

// Dataset is a generated run: the roster, the calls in time order, and the attack instances.
type Dataset struct {
	Config     Config
	Principals []*Principal
	Calls      []Call
	Instances  []Instance
	Start      time.Time // first moment of history
	TestStart  time.Time
	TestEnd    time.Time
}

// Generate builds the dataset of cfg. The same cfg always yields the same dataset.
func Generate(cfg Config) (*Dataset, error) {
	cfg.defaults()
	if cfg.Principals < 40 {
		return nil, fmt.Errorf("traffic: at least 40 principals needed, got %d", cfg.Principals)
	}
	if cfg.Test < 75*time.Minute {
		return nil, fmt.Errorf("traffic: the test phase must last at least 75m (low-and-slow runs an hour), got %s", cfg.Test)
	}
	d := &Dataset{Config: cfg, TestStart: cfg.TestStart, TestEnd: cfg.TestStart.Add(cfg.Test)}
	d.Start = cfg.TestStart.Add(-cfg.History)
	d.Principals = roster(cfg.Seed, cfg.Principals)
	for _, p := range d.Principals {
		d.Calls = append(d.Calls, clean(cfg.Seed, p, d.Start, d.TestEnd)...)
	}
	if err := d.inject(); err != nil {
		return nil, err
	}
	// Ties are broken by principal, then by the order each principal made them in, so the stream
	// is the same whatever the generation order.
	slices.SortStableFunc(d.Calls, func(a, b Call) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Principal, b.Principal))
	})
	return d, nil
}

// rng returns a generator for one purpose of one seed; streams of different purposes never
// overlap, so adding a principal does not change the others' traffic.
func rng(seed uint64, parts ...any) *rand.Rand {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	h.Write(b[:])
	for _, p := range parts {
		fmt.Fprint(h, "/", p)
	}
	s := h.Sum64()
	return rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15))
}

// token is a principal's token id of one day: tokens are reissued daily.
func token(seed uint64, p *Principal, day int) string {
	r := rng(seed, "token", p.Index, day)
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], r.Uint64())
	return "tok-" + hex.EncodeToString(b[:])
}

func lognormal(r *rand.Rand, median, sigma float64) float64 {
	return median * math.Exp(sigma*r.NormFloat64())
}

func expDur(r *rand.Rand, mean time.Duration) time.Duration {
	return time.Duration(r.ExpFloat64() * float64(mean))
}

// pick chooses among weights.
func pick(r *rand.Rand, mix []Weighted) Action {
	var sum float64
	for _, m := range mix {
		sum += m.W
	}
	x := r.Float64() * sum
	for _, m := range mix {
		if x -= m.W; x < 0 {
			return m.Action
		}
	}
	return mix[len(mix)-1].Action
}
