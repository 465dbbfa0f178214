package main

import (
	"bytes"
	"strings"
	"testing"
)

// Bad input to query and investigate is refused with an actionable message before any
// connection is made (the address below is unreachable on purpose).
func TestQueryAndInvestigateRefuseBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"query", "--dp", "tool = 'a'; DROP TABLE events"}, "';' is not allowed"},
		{[]string{"query", "--dp", "sleep(3) = 0"}, "function sleep() is not allowed"},
		{[]string{"query", "--dp", "--format", "xml", "tool = 'a'"}, "unknown format"},
		{[]string{"query", "--param", "t=1", "SELECT 1"}, "parameter t is not used"},
		{[]string{"query", "--param", "novalue", "SELECT {novalue:String}"}, "want name=value"},
		{[]string{"query", "SELECT {tenant:String}"}, "needs parameter tenant"},
		{[]string{"query", "--dp", "--param", "t=1"}, "--param applies to SQL queries"},
		{[]string{"investigate", "table", "x"}, "want principal, session, resource or sandbox"},
		{[]string{"investigate", "principal", "x", "--last", "1h", "--since", "2026-11-20"}, "not both"},
		{[]string{"investigate", "principal", "x", "--since", "tomorrow"}, "--since"},
	} {
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(c.args, "--clickhouse", "127.0.0.1:1", "--metrics-addr", ""))
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.args, err, c.want)
		}
	}
}
