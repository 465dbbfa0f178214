package policy

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/event"
)

// Store.Run is the only goroutine the package starts; a leak there would pin old policies.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var seoul = mustLoc("Asia/Seoul")

func mustLoc(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return l
}

// kst is a wall-clock time in Seoul. 2025-01-22 is a Wednesday.
func kst(day, hour, min int) time.Time {
	return time.Date(2025, 1, day, hour, min, 0, 0, seoul)
}

func mustLoad(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Load(strings.NewReader(src), "test.yaml")
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return p
}

func mustLoadFile(t testing.TB, path string) *Policy {
	t.Helper()
	p, err := LoadFile(path)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return p
}

// analyst is a request that the example policy's analyst-db-query rule allows.
func analyst() Request {
	return Request{
		Tenant: "acme",
		Principal: event.Principal{Subject: "alice", ClientID: "claude-desktop", Roles: []string{"analyst"},
			AuthMethods: []string{"pwd", "mfa"}},
		DeviceHealth: "compliant",
		SourceIP:     netip.MustParseAddr("192.168.1.20"),
		Time:         kst(22, 9, 36),
		Method:       "tools/call",
		Server:       "sales-db",
		Tool:         "db_query",
		Risk:         10,
		RiskKnown:    true,
	}
}

func readFileErr(path string) ([]byte, error) { return os.ReadFile(path) }
