package storage

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

func newSink(t testing.TB, conn driver.Conn, db string) *Sink {
	t.Helper()
	s, err := NewSink(context.Background(), conn, SinkConfig{Database: db, Topics: testTopics, InsertTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s // conn is closed by the test's cleanup, not by the sink
}

func rec[T event.Record](t testing.TB, topic string, v *T) *kgo.Record {
	t.Helper()
	r, err := kafkaio.RecordOf(topic, "acme/alice", v)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Everything the event model says must come back from ClickHouse as written: forensic SQL and
// dashboards read these columns, and the raw column is the evidence.
func TestSinkWritesEventsFindingsActions(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	s := newSink(t, conn, db)
	e := sampleEvent(0)
	f := sampleFinding()
	a := sampleAction(f.ID)
	er, fr, ar := rec(t, testTopics.Events, &e), rec(t, testTopics.Findings, &f), rec(t, testTopics.Actions, &a)
	res, err := s.Handle(ctx, []*kgo.Record{er, fr, ar})
	if err != nil || len(res.Dead) != 0 || len(res.Out) != 0 {
		t.Fatalf("res %+v err %v", res, err)
	}

	var (
		id, tenant, principal, subject, clientID, tool, uri, result, rule, srcIP, sig, cef, raw, session, trace string
		tm, normalized                                                                                          time.Time
		timeMS                                                                                                  uint64
		roles, classes, piiKinds, attrKeys, attrValues                                                          []string
		piiCounts                                                                                               []uint32
		srcPort, status                                                                                         uint16
		code                                                                                                    int32
		reqB, respB                                                                                             uint64
		latency                                                                                                 float64
		sev                                                                                                     uint8
		sens                                                                                                    float32
	)
	err = conn.QueryRow(ctx, `SELECT id, tenant, principal, subject, client_id, tool, resource_uri, toString(result), policy_rule,
		src_ip, signature, cef, raw, session_id, trace_id, time, normalized_time, time_ms, roles, data_classes, pii_kinds,
		attr_keys, attr_values, pii_counts, src_port, http_status, error_code, request_bytes, response_bytes, latency_ms,
		severity, sensitivity FROM `+db+`.events`).Scan(&id, &tenant, &principal, &subject, &clientID, &tool, &uri, &result, &rule,
		&srcIP, &sig, &cef, &raw, &session, &trace, &tm, &normalized, &timeMS, &roles, &classes, &piiKinds,
		&attrKeys, &attrValues, &piiCounts, &srcPort, &status, &code, &reqB, &respB, &latency, &sev, &sens)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"id", id, e.ID}, {"tenant", tenant, "acme"}, {"principal", principal, "alice"}, {"subject", subject, "alice"},
		{"client_id", clientID, "claude-desktop"}, {"tool", tool, "db_query"}, {"resource_uri", uri, "db://sales"},
		{"result", result, "denied"}, {"policy_rule", rule, "no-pii-export"}, {"src_ip", srcIP, "10.1.2.3"},
		{"signature", sig, "MCP-4001"}, {"cef", cef, e.Normalized.CEF},
		{"session_id", session, "s-1"}, {"trace_id", trace, e.Correlation.TraceID},
		{"time", tm.UTC(), e.Time.Truncate(time.Second)}, {"normalized_time", normalized.UTC(), e.Normalized.Time.Truncate(time.Second)},
		{"time_ms", timeMS, uint64(e.Time.UnixMilli())},
		{"src_port", srcPort, uint16(51234)}, {"http_status", status, uint16(403)}, {"error_code", code, int32(-32001)},
		{"request_bytes", reqB, uint64(312)}, {"response_bytes", respB, uint64(2048)}, {"latency_ms", latency, 12.5},
		{"severity", sev, uint8(5)}, {"sensitivity", sens, float32(0.75)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// raw is the record without the CEF the cef column holds: written back, it is the Kafka record.
	var stored event.Event
	if err := event.Decode([]byte(raw), &stored); err != nil || stored.Normalized == nil || stored.Normalized.CEF != "" {
		t.Fatalf("raw %s: %v", raw, err)
	}
	stored.Normalized.CEF = cef
	if back, err := event.Encode(&stored); err != nil || string(back) != string(er.Value) {
		t.Errorf("raw with the cef written back:\n got %s\nwant %s", back, er.Value)
	}
	// Maps become sorted parallel arrays, so equal events give equal rows.
	if !slices.Equal(roles, []string{"analyst", "sales"}) || !slices.Equal(classes, []string{"finance", "pii"}) ||
		!slices.Equal(piiKinds, []string{"email", "phone_kr"}) || !slices.Equal(piiCounts, []uint32{2, 1}) ||
		!slices.Equal(attrKeys, []string{"env", "region"}) || !slices.Equal(attrValues, []string{"prod", "kr"}) {
		t.Errorf("arrays: roles %v classes %v pii %v %v attrs %v %v", roles, classes, piiKinds, piiCounts, attrKeys, attrValues)
	}

	var (
		fid, detector, summary, fprincipal string
		score                              float64
		fsev                               uint8
		ws, we                             time.Time
		fnames, eids                       []string
		fvalues                            []float64
	)
	err = conn.QueryRow(ctx, "SELECT id, principal, detector, summary, score, severity, window_start, window_end, feature_names, feature_values, event_ids FROM "+db+".findings").
		Scan(&fid, &fprincipal, &detector, &summary, &score, &fsev, &ws, &we, &fnames, &fvalues, &eids)
	if err != nil {
		t.Fatal(err)
	}
	if fid != f.ID || fprincipal != "alice" || detector != "rate" || summary != f.Summary || score != 87.5 || fsev != 9 ||
		!ws.Equal(f.WindowStart) || !we.Equal(f.WindowEnd) || !slices.Equal(fnames, []string{"frequency", "sensitivity"}) ||
		!slices.Equal(fvalues, []float64{0.9, 0.75}) || !slices.Equal(eids, []string{"e1", "e2"}) {
		t.Errorf("finding read back as %s %s %s %q %v %d %v %v %v %v %v", fid, fprincipal, detector, summary, score, fsev, ws, we, fnames, fvalues, eids)
	}

	var (
		scopes          []string
		acr, dept, peer string
		fdept, fpeer    string
	)
	err = conn.QueryRow(ctx, "SELECT scopes, acr, department, peer_group FROM "+db+".events").Scan(&scopes, &acr, &dept, &peer)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(scopes, []string{"mcp:tools", "mcp:db"}) || acr != "urn:mfa" || dept != "sales" || peer != "emea-sales" {
		t.Errorf("principal columns read back as %v %q %q %q", scopes, acr, dept, peer)
	}
	if err := conn.QueryRow(ctx, "SELECT department, peer_group FROM "+db+".findings").Scan(&fdept, &fpeer); err != nil || fdept != "sales" || fpeer != "emea-sales" {
		t.Errorf("finding principal columns: %q %q %v", fdept, fpeer, err)
	}

	var aid, findingID, kind, status2 string
	var attempts uint32
	var alat float64
	err = conn.QueryRow(ctx, "SELECT id, finding_id, kind, status, attempts, latency_ms FROM "+db+".actions").
		Scan(&aid, &findingID, &kind, &status2, &attempts, &alat)
	if err != nil {
		t.Fatal(err)
	}
	if aid != a.ID || findingID != f.ID || kind != "revoke" || status2 != "succeeded" || attempts != 1 || alat != 412.5 {
		t.Errorf("action read back as %s %s %s %s %d %v", aid, findingID, kind, status2, attempts, alat)
	}
	// Migration 0008: who decided it, under which playbook, until when, and whether it was a dry
	// run, through the dedup view analysts query.
	var scope, actor, playbook, reason, controlID string
	var expires uint64
	var dry uint8
	err = conn.QueryRow(ctx, "SELECT scope, actor, playbook, reason, control_id, expires_ms, dry_run FROM "+db+".actions_dedup").
		Scan(&scope, &actor, &playbook, &reason, &controlID, &expires, &dry)
	if err != nil {
		t.Fatal(err)
	}
	if scope != "subject" || actor != "playbook:exfil-high" || playbook != "exfil-high" || reason != a.Reason ||
		controlID != "c-1" || expires != uint64(actionExpiry.UnixMilli()) || dry != 1 {
		t.Errorf("action response columns read back as %q %q %q %q %q %d %d", scope, actor, playbook, reason, controlID, expires, dry)
	}
}

// A record the sink cannot store faithfully is dead-lettered with its reason; the rest of the
// batch is written. A bad record must never fail the batch, or the stage would retry it forever.
func TestSinkDeadLetters(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	s := newSink(t, conn, db)
	good := sampleEvent(0)
	past := sampleEvent(1)
	past.Time = time.Date(1969, 7, 20, 20, 17, 0, 0, time.UTC) // DateTime would store 2106
	future := sampleEvent(2)
	future.Time = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
	negative := sampleEvent(3)
	negative.Size.Response = -1
	port := sampleEvent(4)
	port.Network.SrcPort = 70000
	hugePII := sampleEvent(5)
	hugePII.PII = map[string]int{"email": math.MaxUint32 + 1}
	badWindow := sampleFinding()
	badWindow.WindowStart = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	badAction := sampleAction("f")
	badAction.Attempts = -1
	otherResult := sampleEvent(6)
	otherResult.Outcome.Result = "quarantined" // a newer source's result: stored as 'other', not refused

	cases := []struct {
		rec    *kgo.Record
		reason string
	}{
		{&kgo.Record{Topic: testTopics.Events, Value: []byte(`{"schema":1,"id":`)}, "malformed"},
		{&kgo.Record{Topic: testTopics.Events, Value: []byte(`{"schema":7,"id":"x","time":"2026-01-01T00:00:00Z","source":"mcp"}`)}, "unsupported schema"},
		{&kgo.Record{Topic: testTopics.Findings, Value: []byte(`{"schema":1}`)}, "malformed"},
		{rec(t, testTopics.Events, &past), "outside ClickHouse DateTime"},
		{rec(t, testTopics.Events, &future), "outside ClickHouse DateTime"},
		{rec(t, testTopics.Events, &negative), "response size -1"},
		{rec(t, testTopics.Events, &port), "src port 70000"},
		{rec(t, testTopics.Events, &hugePII), "pii count email"},
		{rec(t, testTopics.Findings, &badWindow), "window start"},
		{rec(t, testTopics.Actions, &badAction), "attempts -1"},
		{rec(t, "unit.elsewhere.v1", &good), "no table"},
	}
	batch := []*kgo.Record{rec(t, testTopics.Events, &good), rec(t, testTopics.Events, &otherResult)}
	for _, c := range cases {
		batch = append(batch, c.rec)
	}
	res, err := s.Handle(ctx, batch)
	if err != nil {
		t.Fatalf("bad records failed the batch: %v", err)
	}
	if len(res.Dead) != len(cases) {
		t.Fatalf("%d dead letters, want %d: %v", len(res.Dead), len(cases), res.Dead)
	}
	for i, d := range res.Dead {
		if d.Record != cases[i].rec || !strings.Contains(d.Reason.Error(), cases[i].reason) || !kafkaio.IsPermanent(d.Reason) {
			t.Errorf("dead letter %d: %v, want a permanent error with %q", i, d.Reason, cases[i].reason)
		}
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".events"); n != 2 {
		t.Fatalf("%d events written, want the 2 good ones", n)
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".events WHERE result = 'other' AND id = ?", otherResult.ID); n != 1 {
		t.Fatal("unknown result not stored as 'other'")
	}
}

// When ClickHouse cannot be reached the batch must fail as a whole (the stage retries it) and
// nothing may be dead-lettered; once it is back, the retried batch lands exactly once.
func TestSinkUnreachableRetries(t *testing.T) {
	conn, db := migrated(t)
	env := chEnv(t)
	p := newProxy(t, env.Addr)
	viaProxy, err := Open(context.Background(), Options{Addr: p.addr, User: env.AdminUser, Password: env.AdminPassword, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSink(context.Background(), viaProxy, SinkConfig{Database: db, Topics: testTopics, InsertTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}()
	var batch []*kgo.Record
	for i := range 10 {
		e := sampleEvent(i)
		batch = append(batch, rec(t, testTopics.Events, &e))
	}
	ctx := context.Background()
	p.down()
	for range 3 {
		res, err := s.Handle(ctx, batch)
		if err == nil || len(res.Dead) != 0 {
			t.Fatalf("with ClickHouse unreachable: res %+v err %v; want an error and no dead letters", res, err)
		}
		if !strings.Contains(err.Error(), db+".events") || !strings.Contains(err.Error(), "10") {
			t.Fatalf("error lacks context: %v", err)
		}
	}
	p.restore()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := s.Handle(ctx, batch)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after ClickHouse came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".events FINAL"); n != 10 {
		t.Fatalf("%d events after recovery, want 10", n)
	}
}

// The sink must not start against a database it cannot write.
func TestNewSinkChecksSchema(t *testing.T) {
	conn, db := freshDB(t)
	_, err := NewSink(context.Background(), conn, SinkConfig{Database: db, Topics: testTopics})
	if !errors.Is(err, ErrSchemaBehind) {
		t.Fatalf("got %v, want ErrSchemaBehind", err)
	}
	if _, err := NewSink(context.Background(), conn, SinkConfig{Database: "x;y", Topics: testTopics}); err == nil {
		t.Fatal("bad database name accepted")
	}
	if _, err := NewSink(context.Background(), conn, SinkConfig{Database: db}); err == nil {
		t.Fatal("missing topics accepted")
	}
}

// The read-only forensic user must be refused INSERT and DDL by the server itself (not by a
// client-side check), in the deployment database it can read.
func TestReadOnlyUserRefusedByServer(t *testing.T) {
	env := chEnv(t)
	ctx := context.Background()
	admin := openAs(t, env.Addr, env.AdminUser, env.AdminPassword, "")
	probe := env.Database + ".ro_probe_" + testenv.Unique(t)
	if err := admin.Exec(ctx, "CREATE TABLE "+probe+" (x UInt8) ENGINE = Memory"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Exec(context.Background(), "DROP TABLE IF EXISTS "+probe) })

	ro := openAs(t, env.Addr, env.ROUser, env.ROPassword, env.Database)
	if n := count(t, ro, "SELECT count() FROM "+probe); n != 0 {
		t.Fatalf("read-only user cannot read: %d", n)
	}
	insert := func(ctx context.Context) error {
		b, err := ro.PrepareBatch(ctx, "INSERT INTO "+probe+" (x)")
		if err != nil {
			return err
		}
		defer func() { _ = b.Close() }()
		if err := b.Append(uint8(1)); err != nil {
			return err
		}
		return b.Send()
	}
	err := insert(ctx)
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) || ex.Code != 164 { // READONLY
		t.Fatalf("INSERT as %s: got %v, want server exception 164 (READONLY)", env.ROUser, err)
	}
	err = ro.Exec(ctx, "CREATE TABLE "+probe+"_x (x UInt8) ENGINE = Memory")
	if !errors.As(err, &ex) || ex.Code != 164 {
		t.Fatalf("CREATE as %s: got %v, want server exception 164 (READONLY)", env.ROUser, err)
	}
	// readonly=2 lets clients send query settings (clickhouse-go does), but never readonly itself.
	lifted := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"readonly": 0}))
	err = insert(lifted)
	if !errors.As(err, &ex) || ex.Code != 164 {
		t.Fatalf("INSERT with readonly=0 as %s: got %v, want server exception 164 (READONLY)", env.ROUser, err)
	}
	if n := count(t, admin, "SELECT count() FROM "+probe); n != 0 {
		t.Fatalf("read-only user's INSERT landed %d rows", n)
	}
}

// The sink as a stage: records on the Kafka topics end up in ClickHouse, bad ones on the
// dead-letter topic, and offsets are committed only after the INSERT.
func TestSinkStage(t *testing.T) {
	conn, db := migrated(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	names := event.TopicNames("fake")
	cl, err := kafkaio.NewClient(kafkaio.Config{Brokers: c.ListenAddrs(), ClientID: "test"}, kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkaio.EnsureTopics(ctx, cl, kafkaio.Topics(names, 3, 1, 24)); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range 40 {
		e := sampleEvent(i)
		e.Principal.Subject = []string{"alice", "bob", "carol", "dave"}[i%4]
		recs = append(recs, rec(t, names.Events, &e))
	}
	f := sampleFinding()
	recs = append(recs, rec(t, names.Findings, &f), &kgo.Record{Topic: names.Actions, Value: []byte("nope")})
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	s, err := NewSink(ctx, conn, SinkConfig{Database: db, Topics: names})
	if err != nil {
		t.Fatal(err)
	}
	st, err := kafkaio.NewStage(kafkaio.Config{Brokers: c.ListenAddrs()}, kafkaio.StageConfig{
		Name: "sink", Topics: s.Topics(), DeadLetterTopic: names.DeadLetter, ShutdownTimeout: time.Second,
	}, s, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- st.Run(sctx) }()
	for ctx.Err() == nil && count(t, conn, "SELECT count() FROM "+db+".events") < 40 {
		time.Sleep(50 * time.Millisecond)
	}
	rc, err := kafkaio.NewClient(kafkaio.Config{Brokers: c.ListenAddrs(), ClientID: "reader"},
		kgo.ConsumeTopics(names.DeadLetter), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var dead []*kgo.Record
	for len(dead) < 1 && ctx.Err() == nil {
		dead = append(dead, rc.PollFetches(ctx).Records()...)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".events FINAL"); n != 40 {
		t.Fatalf("%d events in ClickHouse, want 40", n)
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".findings FINAL"); n != 1 {
		t.Fatalf("%d findings in ClickHouse, want 1", n)
	}
	if len(dead) != 1 || string(dead[0].Value) != "nope" || kafkaio.Header(dead[0], kafkaio.HeaderDLQStage) != "sink" {
		t.Fatalf("dead letters %v", dead)
	}
}

// BenchmarkSinkInsert measures rows per second from decoded Kafka records into the real
// ClickHouse, batches of 5000 (the stage's default poll), each with new ids so that write-once's
// lookup runs and finds nothing, as in steady state.
func BenchmarkSinkInsert(b *testing.B) {
	conn, db := migrated(b)
	s := newSink(b, conn, db)
	ctx := context.Background()
	batch := make([]*kgo.Record, 5000)
	rows := 0
	for b.Loop() {
		b.StopTimer()
		for i := range batch {
			e := sampleEvent(i)
			batch[i] = rec(b, testTopics.Events, &e)
		}
		b.StartTimer()
		if _, err := s.Handle(ctx, batch); err != nil {
			b.Fatal(err)
		}
		rows += len(batch)
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}
