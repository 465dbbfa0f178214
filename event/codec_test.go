package event

import (
	stdjson "encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	json "github.com/goccy/go-json"
)

func sampleEvent() Event {
	return Event{
		ID:       NewID(),
		Time:     time.Date(2026, 11, 23, 9, 6, 12, 0, time.UTC),
		Source:   SourceMCP,
		Observer: "gw-1",
		Tenant:   "acme",
		Principal: Principal{Subject: "alice", ClientID: "claude-desktop", Roles: []string{"analyst"},
			TokenID: "tok_3f2a", AuthMethods: []string{"pwd", "hwk"}},
		Correlation: Correlation{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SessionID: "s-1", RequestID: "7"},
		MCP: &MCP{Direction: DirRequest, Method: "tools/call", Tool: "db_query", ProtocolVersion: "2025-11-25",
			Transport: "streamable-http", ArgumentsMasked: `{"sql":"select * from sales where email='[EMAIL]'"}`},
		Target:      Target{Server: "sales-db", Sandbox: "sbx-1"},
		Network:     Network{SrcIP: "10.1.2.3", SrcPort: 51234},
		Outcome:     Outcome{Result: ResultAllowed, PolicyRule: "analysts-read-sales"},
		Size:        Size{Request: 312},
		DataClasses: []string{"finance", "pii"},
		PII:         map[string]int{"email": 1},
		Severity:    3,
	}
}

// A record must survive the wire unchanged, or stages would silently disagree about events.
func TestRoundTrip(t *testing.T) {
	in := sampleEvent()
	b, err := Encode(&in)
	if err != nil {
		t.Fatal(err)
	}
	var out Event
	if err := Decode(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Schema != SchemaVersion || out.ID != in.ID || !out.Time.Equal(in.Time) || out.Principal.Subject != "alice" ||
		out.MCP.Tool != "db_query" || out.PII["email"] != 1 || out.Outcome.Result != ResultAllowed {
		t.Fatalf("round trip changed the event:\n in=%+v\nout=%+v", in, out)
	}
}

// Readers must refuse what they cannot read correctly instead of half-reading it.
func TestDecodeRejects(t *testing.T) {
	good := sampleEvent()
	b, _ := Encode(&good)
	cases := map[string]struct {
		in   string
		want error
	}{
		"not json":      {`{"schema":1,`, ErrMalformed},
		"no schema":     {`{"id":"x","time":"2026-01-01T00:00:00Z","source":"mcp"}`, ErrMalformed},
		"newer schema":  {strings.Replace(string(b), `"schema":1`, `"schema":2`, 1), ErrSchema},
		"no id":         {`{"schema":1,"time":"2026-01-01T00:00:00Z","source":"mcp"}`, ErrMalformed},
		"no time":       {`{"schema":1,"id":"x","source":"mcp"}`, ErrMalformed},
		"no source":     {`{"schema":1,"id":"x","time":"2026-01-01T00:00:00Z"}`, ErrMalformed},
		"wrong type":    {`{"schema":"1","id":"x"}`, ErrMalformed},
		"control empty": {`{"schema":1,"id":"x","time":"2026-01-01T00:00:00Z","kind":"revoke"}`, ErrMalformed},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var err error
			if name == "control empty" {
				var ctl Control
				err = Decode([]byte(c.in), &ctl)
			} else {
				var e Event
				err = Decode([]byte(c.in), &e)
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestControlKeyAndExpiry(t *testing.T) {
	now := time.Now()
	exp := now.Add(time.Minute)
	c := Control{Kind: ControlRevoke, Scope: ScopeSubject, Tenant: "acme", Value: "mallory", Expires: &exp}
	if got := c.Key(); got != "revoke/subject/acme/mallory" {
		t.Fatalf("key %q", got)
	}
	if !c.Active(now) || c.Active(exp) {
		t.Fatal("expiry not honoured")
	}
}

func TestPrincipalKey(t *testing.T) {
	if k := PrincipalKey("acme", Principal{Subject: "alice", ClientID: "c"}); k != "acme/alice" {
		t.Fatal(k)
	}
	if k := PrincipalKey("acme", Principal{ClientID: "c"}); k != "acme/c" {
		t.Fatal(k)
	}
	if k := PrincipalKey("acme", Principal{}); k != "acme/anonymous" {
		t.Fatal(k)
	}
}

// A score's key must be its principal's key on every other topic, or a principal's score would
// land in a different partition than its events and the gateway would look it up under a
// different name.
func TestScoreKeyIsPrincipalKey(t *testing.T) {
	for _, p := range []Principal{{Subject: "a/b"}, {ClientID: "c"}, {}} {
		s := Score{Tenant: "acme", Subject: PrincipalID(p)}
		if s.Key() != PrincipalKey("acme", p) {
			t.Fatalf("%+v: score key %q, principal key %q", p, s.Key(), PrincipalKey("acme", p))
		}
		tenant, id, err := ParseScoreKey(s.Key())
		if err != nil || tenant != "acme" || id != PrincipalID(p) {
			t.Fatalf("parse %q: %q %q %v", s.Key(), tenant, id, err)
		}
	}
	for _, bad := range []string{"", "nokey", "/alice"} {
		if _, _, err := ParseScoreKey(bad); !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseScoreKey(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestTopicNames(t *testing.T) {
	if n := TopicNames(""); n.Raw != "mcpwatch.raw.v1" || n.Control != "mcpwatch.control.v1" {
		t.Fatalf("%+v", n)
	}
	if n := TopicNames("x"); n.DeadLetter != "x.deadletter.v1" {
		t.Fatalf("%+v", n)
	}
}

// FuzzDecode: hostile bytes on a topic must yield an error, never a panic.
func FuzzDecode(f *testing.F) {
	e := sampleEvent()
	b, _ := Encode(&e)
	f.Add(b)
	f.Add([]byte(`{"schema":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Event
		if err := Decode(b, &e); err == nil && (e.ID == "" || e.Schema == 0) {
			t.Fatalf("accepted an invalid event: %q", b)
		}
		var c Control
		_ = Decode(b, &c)
		// DecodeReused, into a target full of another event, agrees with Decode.
		reused := sampleEvent()
		reused.Attributes = map[string]string{"k": "v"}
		checkReused(t, b, &reused)
	})
}

// checkReused decodes b with DecodeReused into e and with Decode into a fresh event, and fails
// unless both accept or refuse it alike and, accepted, decode the same event.
func checkReused(t *testing.T, b []byte, e *Event) {
	t.Helper()
	var want Event
	werr := Decode(b, &want)
	gerr := DecodeReused(b, e)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%q: Decode error %v, DecodeReused error %v", b, werr, gerr)
	}
	if werr != nil {
		if !errors.Is(gerr, ErrMalformed) && !errors.Is(gerr, ErrSchema) {
			t.Fatalf("%q: DecodeReused error %v wraps neither ErrMalformed nor ErrSchema", b, gerr)
		}
		return
	}
	got := *e
	emptyNil(&got)
	emptyNil(&want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: DecodeReused gave\n%+v\nDecode gave\n%+v", b, got, want)
	}
}

// emptyNil makes e's empty slices and maps nil: DecodeReused leaves an absent one empty, Decode
// nil (and [] empty): the same event.
func emptyNil(e *Event) {
	for _, s := range []*[]string{&e.Principal.Roles, &e.Principal.AuthMethods, &e.Principal.Scopes, &e.DataClasses} {
		if len(*s) == 0 {
			*s = nil
		}
	}
	if len(e.PII) == 0 {
		e.PII = nil
	}
	if len(e.Attributes) == 0 {
		e.Attributes = nil
	}
}

// The detect stage decodes every event into one reused Event: nothing of the previous event may
// show through in the next (a block, a class, a PII count or an attribute it did not carry).
func TestDecodeReused(t *testing.T) {
	full := sampleEvent()
	full.Attributes = map[string]string{"mcp.tool.changed": "db_query"}
	full.Normalized = &Normalized{Signature: "MCP-1001", Name: "tools/call", CEF: "CEF:0|a|b|1|MCP-1001|x|3|", Sensitivity: 0.7}
	full.Process = &Process{PID: 7, Args: []string{"a", "b"}}
	full.Principal.Scopes = []string{"mcp:tools"}
	bare := Event{ID: "e-2", Time: full.Time, Source: SourceKernel, Tenant: "acme"}
	escaped := sampleEvent()
	escaped.Principal.Subject = "al\"ice\n\u00e9"
	escaped.DataClasses = []string{"pii"}
	var recs [][]byte
	for _, e := range []Event{full, bare, escaped, full, full} {
		b, err := Encode(&e)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, b)
	}
	recs = append(recs, []byte(`{"schema":1,"id":"x","time":"2026-11-23T09:06:12Z","source":"mcp","mcp":null,"pii":null}`),
		[]byte(`{"schema":9,"id":"x","time":"2026-11-23T09:06:12Z","source":"mcp"}`), []byte(`{"schema":1,`))
	var e Event
	for _, b := range recs {
		checkReused(t, b, &e)
	}
}

// BenchmarkCodec measures encode + decode of a typical audit event: the per-core ceiling the wire
// format puts on any stage.
func BenchmarkCodec(b *testing.B) {
	e := sampleEvent()
	enc, _ := Encode(&e)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		buf, err := Encode(&e)
		if err != nil {
			b.Fatal(err)
		}
		var out Event
		if err := Decode(buf, &out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkWireFormat compares the JSON library the codec uses with encoding/json in one run.
func BenchmarkWireFormat(b *testing.B) {
	e := sampleEvent()
	e.Schema = SchemaVersion
	for _, lib := range []struct {
		name string
		m    func(any) ([]byte, error)
		u    func([]byte, any) error
	}{{"encoding-json", stdjson.Marshal, stdjson.Unmarshal}, {"go-json", json.Marshal, json.Unmarshal}} {
		b.Run(lib.name, func(b *testing.B) {
			for b.Loop() {
				buf, _ := lib.m(&e)
				var out Event
				if err := lib.u(buf, &out); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// The storage keeps the CEF in a column and the record without it; writing the CEF back into
// the stored record must give the Kafka record byte for byte, whatever the CEF holds.
func TestWithoutCEF(t *testing.T) {
	for _, cef := range []string{
		`CEF:0|mcpwatch|mcpwatch|1|MCP-1001|Tool call|1|suser=alice`,
		"CEF:0|v\\|p|x|y|n|5|msg=a\\=b \\\\ c\\nd \"quoted\" <tag> & \u2028 \x01 한국어 🙂",
		`"cef":"","normalized":{}`,
	} {
		e := sampleEvent()
		e.Attributes = map[string]string{"cef": cef, "normalized": "{}"}
		e.Normalized = &Normalized{Time: time.Date(2026, 11, 23, 9, 6, 12, 123456789, time.UTC),
			Signature: "MCP-1001", Name: "Tool call", CEF: cef, Sensitivity: 0.7}
		rec, err := Encode(&e)
		if err != nil {
			t.Fatal(err)
		}
		var dec Event
		if err := Decode(rec, &dec); err != nil {
			t.Fatal(err)
		}
		stored, ok := WithoutCEF(rec, dec.Normalized)
		if !ok {
			t.Fatalf("the encoder's own record was not recognised: %s", rec)
		}
		var back Event
		if err := Decode(stored, &back); err != nil {
			t.Fatalf("stored record does not decode: %v\n%s", err, stored)
		}
		if back.Normalized.CEF != "" || back.Attributes["cef"] != cef || back.Normalized.Signature != "MCP-1001" ||
			len(stored) >= len(rec) {
			t.Fatalf("wrong part removed:\n%s", stored)
		}
		back.Normalized.CEF = dec.Normalized.CEF
		again, err := Encode(&back)
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(rec) {
			t.Fatalf("record with the CEF written back differs:\n got %s\nwant %s", again, rec)
		}
	}
}

// Records in any other layout are stored whole rather than guessed at.
func TestWithoutCEFKeepsOtherLayouts(t *testing.T) {
	n := &Normalized{Signature: "MCP-1001", Name: "Tool call", CEF: "CEF:0|a|b|c|d|e|1|"}
	nb, _ := json.Marshal(n)
	for name, rec := range map[string]string{
		"normalized first": `{"normalized":` + string(nb) + `,"schema":1}`,
		"spaces":           `{"schema":1, "normalized": ` + string(nb) + `}`,
		"other cef":        `{"schema":1,"normalized":{"time":"0001-01-01T00:00:00Z","signature":"MCP-1001","name":"Tool call","cef":"CEF:0|a|b|c|d|e|2|"}}`,
		"truncated":        string(nb[1:]) + `}`,
		"empty":            ``,
	} {
		if out, ok := WithoutCEF([]byte(rec), n); ok || string(out) != rec {
			t.Errorf("%s: changed to %s (ok=%v)", name, out, ok)
		}
	}
	if _, ok := WithoutCEF([]byte(`{}`), nil); ok {
		t.Error("no normalized block: ok")
	}
}

// AppendEncode must write what Encode writes, record after record into one buffer, or a
// producer laying out a batch with it would publish other bytes than one encoding each record.
func TestAppendEncode(t *testing.T) {
	e := sampleEvent()
	e.Attributes = map[string]string{"note": "<script>&'\u2028"} // escaping as Encode does
	f := Finding{ID: "f1", Time: e.Time, Tenant: "acme", Detector: "ueba", Summary: "a <b> & c"}
	want1, err := Encode(&e)
	if err != nil {
		t.Fatal(err)
	}
	want2, err := Encode(&f)
	if err != nil {
		t.Fatal(err)
	}
	buf := []byte("prefix")
	buf, err = AppendEncode(buf, &e)
	if err != nil {
		t.Fatal(err)
	}
	mid := len(buf)
	if buf, err = AppendEncode(buf, &f); err != nil {
		t.Fatal(err)
	}
	if got := string(buf); got != "prefix"+string(want1)+string(want2) {
		t.Fatalf("appended\n %s\nwant prefix then\n %s\n %s", got, want1, want2)
	}
	if string(buf[mid:]) != string(want2) {
		t.Fatal("second record not where the first ended")
	}
	if a := testing.AllocsPerRun(100, func() { buf, _ = AppendEncode(buf[:0], &e) }); a > 0 && !raceEnabled {
		t.Errorf("AppendEncode allocates %v times into a buffer with room", a)
	}
	bad := Finding{ID: "f", Time: e.Time, Features: map[string]float64{"x": math.NaN()}}
	if out, err := AppendEncode(buf[:3], &bad); err == nil || len(out) != 3 {
		t.Errorf("unencodable record: err %v, %d bytes left (want the 3 given)", err, len(out))
	}
}
