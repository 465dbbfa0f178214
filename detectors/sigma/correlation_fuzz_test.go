package sigma

import (
	"errors"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// FuzzCorrelationLoad: a correlation rule file is untrusted input. If this fails, a hostile or
// mangled file crashes the loader, an error comes without its sentinel, or a loaded correlation
// crashes the correlator on the first events.
func FuzzCorrelationLoad(f *testing.F) {
	for _, body := range []string{
		"  type: event_count\n  rules: [denied]\n  group-by: [principal.id]\n  timespan: 1m\n  condition: {gte: 3}\n",
		"  type: value_count\n  rules: [call]\n  group-by: [principal.id]\n  timespan: 10m\n  condition: {field: mcp.tool, gt: 2, lte: 9}\n",
		"  type: temporal\n  rules: [read_db, send_mail]\n  group-by: [who]\n  timespan: 5m\n  aliases: {who: {read_db: principal.id, send_mail: src_ip}}\n",
		"  type: temporal_ordered\n  rules: [read_db, send_mail]\n  timespan: 2h\n  generate: true\n",
		"  type: event_count\n  rules: [" + idB + "]\n  timespan: 1m\n  condition: {eq: 0}\n",
	} {
		f.Add(corrDoc(idA, body))
	}
	f.Add(corrDoc(idA, "  type: event_count\n  rules: [x]\n  timespan: 1m\n  condition: {gte: 2}\n") + "name: x\n")
	f.Fuzz(func(t *testing.T, doc string) {
		rs, errs := Parse("corr.yml", []byte(baseRules+doc))
		for _, err := range errs {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error without a sentinel: %v", err)
			}
		}
		c, err := rs.NewCorrelator(Limits{MaxGroups: 4, MaxValues: 4})
		if err != nil {
			return
		}
		for _, e := range []*event.Event{call("alice", "db_query", 0, true), call("alice", "send_mail", time.Second, true),
			call("bob", "send_mail", -time.Second, false), call("alice", "x", time.Hour, true)} {
			c.Observe(e, rs.Match(e), nil)
			c.Expire(e.Time)
		}
	})
}
