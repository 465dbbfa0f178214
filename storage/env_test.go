package storage

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// chEnv returns the real ClickHouse, checked reachable as the admin user.
func chEnv(t testing.TB) testenv.ClickHouseEnv {
	t.Helper()
	env := testenv.ClickHouse(t)
	conn, err := Open(context.Background(), Options{Addr: env.Addr, User: env.AdminUser, Password: env.AdminPassword, DialTimeout: 5 * time.Second})
	if err != nil {
		testenv.Missing(t, "ClickHouse", err.Error())
	}
	_ = conn.Close()
	return env
}

func openAs(t testing.TB, addr, user, password, database string) driver.Conn {
	t.Helper()
	conn, err := Open(context.Background(), Options{Addr: addr, User: user, Password: password, Database: database, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// freshDB creates mcpwatch_test_<unique> as the admin user and drops it when the test ends. It
// returns an admin connection and the database name.
func freshDB(t testing.TB) (driver.Conn, string) {
	t.Helper()
	env := chEnv(t)
	conn := openAs(t, env.Addr, env.AdminUser, env.AdminPassword, "")
	db := "mcpwatch_test_" + testenv.Unique(t)
	ctx := context.Background()
	if err := CreateDatabase(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := DropDatabase(context.Background(), conn, db); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return conn, db
}

// migrated is freshDB with this build's schema applied.
func migrated(t testing.TB) (driver.Conn, string) {
	t.Helper()
	conn, db := freshDB(t)
	if _, err := Migrate(context.Background(), conn, db); err != nil {
		t.Fatal(err)
	}
	return conn, db
}

func count(t testing.TB, conn driver.Conn, q string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// proxy is a TCP relay the test can cut and restore, to make ClickHouse unreachable for one
// client without touching the shared server.
type proxy struct {
	t      testing.TB
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newProxy(t testing.TB, target string) *proxy {
	p := &proxy{t: t, target: target}
	p.up("127.0.0.1:0")
	t.Cleanup(p.wg.Wait) // cleanups run last-in first-out: down, then wait
	t.Cleanup(p.down)
	return p
}

func (p *proxy) up(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			for _, pair := range [][2]net.Conn{{c, s}, {s, c}} {
				p.wg.Add(1)
				go func() {
					defer p.wg.Done()
					_, _ = io.Copy(pair[0], pair[1])
					_ = pair[0].Close()
					_ = pair[1].Close()
				}()
			}
		}
	}()
}

// down closes the listener and every relayed connection.
func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// restore listens again on the same address.
func (p *proxy) restore() { p.up(p.addr) }

// sample records for the sink tests.

var testTopics = event.TopicNames("unit")

func sampleEvent(i int) event.Event {
	t := time.Date(2026, 11, 23, 9, 6, 12, 345_000_000, time.UTC).Add(time.Duration(i) * time.Second)
	return event.Event{
		Schema: event.SchemaVersion, ID: event.NewID(), Time: t, Source: event.SourceMCP, Observer: "gw-1", Tenant: "acme",
		Principal: event.Principal{Subject: "alice", ClientID: "claude-desktop", Issuer: "https://idp.example",
			Roles: []string{"analyst", "sales"}, TokenID: "tok_3f2a", AuthMethods: []string{"pwd", "hwk"},
			Scopes: []string{"mcp:tools", "mcp:db"}, ACR: "urn:mfa", Department: "sales", PeerGroup: "emea-sales"},
		Correlation: event.Correlation{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7", SessionID: "s-1", RequestID: "7"},
		MCP: &event.MCP{Direction: event.DirRequest, Method: "tools/call", Tool: "db_query", ResourceURI: "db://sales",
			ProtocolVersion: "2025-11-25", Transport: "streamable-http", ArgumentsMasked: `{"q":"[EMAIL]"}`,
			ClientName: "claude", ClientVersion: "1.2", LatencyMS: 12.5, ToolsHash: "h1"},
		Target:      event.Target{Server: "sales-db", Route: "/mcp/sales", Sandbox: "sbx-1"},
		Network:     event.Network{SrcIP: "10.1.2.3", SrcPort: 51234, DstIP: "10.0.0.9", DstPort: 8443},
		Outcome:     event.Outcome{Result: event.ResultDenied, PolicyRule: "no-pii-export", Reason: "pii in args", ErrorCode: -32001, HTTPStatus: 403},
		Size:        event.Size{Request: 312, Response: 2048},
		DataClasses: []string{"finance", "pii"},
		PII:         map[string]int{"phone_kr": 1, "email": 2},
		Severity:    5,
		Attributes:  map[string]string{"region": "kr", "env": "prod"},
		Normalized: &event.Normalized{Time: t.Add(time.Second), Signature: "MCP-4001", Name: "Request denied by policy",
			CEF: "CEF:0|mcpwatch|mcpwatch|1|MCP-4001|Request denied by policy|5|suser=alice", Sensitivity: 0.75,
			OCSF: json.RawMessage(`{"class_uid":6003,"activity_id":99}`)},
	}
}

func sampleFinding() event.Finding {
	t := time.Date(2026, 11, 23, 9, 7, 0, 0, time.UTC)
	return event.Finding{
		Schema: event.SchemaVersion, ID: event.NewID(), Time: t, Tenant: "acme",
		Principal: event.Principal{Subject: "alice", ClientID: "claude-desktop", Department: "sales", PeerGroup: "emea-sales"},
		Detector:  "rate", Score: 87.5, Severity: 9, Summary: "tool calls 12x above baseline",
		WindowStart: t.Add(-time.Minute), WindowEnd: t,
		Features: map[string]float64{"frequency": 0.9, "sensitivity": 0.75}, EventIDs: []string{"e1", "e2"},
	}
}

func sampleAction(findingID string) event.Action {
	return event.Action{
		Schema: event.SchemaVersion, ID: event.NewID(), Time: time.Date(2026, 11, 23, 9, 7, 0, 400_000_000, time.UTC),
		Tenant: "acme", FindingID: findingID, Subject: "alice", Kind: event.ActionRevoke,
		Target: "revoke/subject/acme/alice", Status: "succeeded", Attempts: 1, LatencyMS: 412.5,
		Scope: event.ScopeSubject, Actor: "playbook:exfil-high", Playbook: "exfil-high",
		Reason: "detector=ueba, min_score=80", ControlID: "c-1", Expires: &actionExpiry, DryRun: true,
	}
}

var actionExpiry = time.Date(2026, 11, 23, 10, 7, 0, 400_000_000, time.UTC)

func sampleScore(i int) event.Score {
	return event.Score{
		Schema: event.SchemaVersion, Time: time.Date(2026, 11, 23, 9, 7, 0, 250_000_000, time.UTC).Add(time.Duration(i) * time.Second),
		Tenant: "acme", Subject: "alice", Score: 42.5 + float64(i),
		Components: map[string]float64{"frequency": 0.9, "sensitivity": 0.75, "user_risk": 0.2},
	}
}
