package storage

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestOptionsValidate(t *testing.T) {
	for name, o := range map[string]Options{
		"no address":     {},
		"blank address":  {Addr: " , "},
		"bad database":   {Addr: "h:9000", Database: "a;b"},
		"negative value": {Addr: "h:9000", DialTimeout: -1},
	} {
		if err := o.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: got %v, want ErrConfig", name, err)
		}
	}
	if err := (Options{Addr: "a:1, b:2", Database: "mcpwatch"}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestParseVersion(t *testing.T) {
	v, err := ParseVersion("18.16.1")
	if err != nil || v.Major != 18 || v.Minor != 16 || v.Patch != 1 || !v.AtLeast(18, 16) || v.AtLeast(18, 17) || v.AtLeast(19, 0) {
		t.Fatalf("%+v %v", v, err)
	}
	v, err = ParseVersion("24.8.4.13")
	if err != nil || !v.AtLeast(18, 16) || !v.AtLeast(24, 8) || v.AtLeast(24, 9) {
		t.Fatalf("%+v %v", v, err)
	}
	for _, bad := range []string{"", "18", "18.x.1", "18.16", "-1.2.3"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Open must fail fast with an error that says what is wrong, and never echo the password.
func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	_ = ln.Close()
	start := time.Now()
	_, err = Open(ctx, Options{Addr: closed, User: "u", Password: "hunter2", DialTimeout: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "is it running") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("nothing listening: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("took %s to fail", time.Since(start))
	}

	env := chEnv(t)
	_, err = Open(ctx, Options{Addr: env.Addr, User: env.AdminUser, Password: "wrong-hunter2", DialTimeout: 5 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "server refused") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("wrong password: %v", err)
	}
}

func TestServerVersion(t *testing.T) {
	env := chEnv(t)
	conn := openAs(t, env.Addr, env.AdminUser, env.AdminPassword, "")
	v, err := ServerVersion(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	if !v.AtLeast(MinServer.Major, MinServer.Minor) {
		t.Fatalf("server %s older than %s", v, MinServer)
	}
	t.Logf("ClickHouse %s", v)
}

// QueryTable prints forensic SQL output: every ClickHouse type the schema uses must come out as
// readable text, with arguments bound safely.
func TestQueryTable(t *testing.T) {
	env := chEnv(t)
	conn := openAs(t, env.Addr, env.AdminUser, env.AdminPassword, "")
	cols, rows, err := QueryTable(context.Background(), conn, `SELECT
		toDateTime('2026-11-23 09:06:12', 'UTC') AS t, 'it''s' AS s, [?, 'b'] AS arr, [1, 2] AS nums,
		CAST('denied' AS Enum8('allowed' = 1, 'denied' = 2)) AS result, toUInt8(5) AS sev, 0.75 AS f,
		CAST(NULL AS Nullable(String)) AS n, toNullable('x') AS nn, toInt32(-32001) AS code, ? AS arg
		FROM system.one`, "a'1", "x'); DROP TABLE t; --")
	if err != nil {
		t.Fatal(err)
	}
	wantCols := []string{"t", "s", "arr", "nums", "result", "sev", "f", "n", "nn", "code", "arg"}
	wantRow := []string{"2026-11-23 09:06:12", "it's", `["a'1","b"]`, "[1,2]", "denied", "5", "0.75", "NULL", "x", "-32001", "x'); DROP TABLE t; --"}
	if !slices.Equal(cols, wantCols) || len(rows) != 1 || !slices.Equal(rows[0], wantRow) {
		t.Fatalf("got %q %q\nwant %q %q", cols, rows, wantCols, wantRow)
	}
	if _, _, err := QueryTable(context.Background(), conn, "SELECT nope FROM system.one"); err == nil {
		t.Fatal("bad query accepted")
	}
}
