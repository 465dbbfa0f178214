package mcpwire

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestReplaceMember: the gateway relays a redacted or filtered result by replacing one member of
// the upstream's message. If it failed, a nested or duplicated member could be rewritten instead
// of the result the client acts on.
func TestReplaceMember(t *testing.T) {
	cases := []struct{ in, name, val, want string }{
		{`{"a":1,"result":{"x":[1,2]},"z":"}"}`, "result", `"r"`, `{"a":1,"result":"r","z":"}"}`},
		{` { "result" : [ ] } `, "result", `{}`, ` { "result" : {} } `},
		{`{"a":{"result":1},"b":2}`, "result", `0`, ``}, // only top-level members
		{`{"result":1,"result":2}`, "result", `0`, ``},  // twice: ambiguous
	}
	for _, tc := range cases {
		out, ok := ReplaceMember([]byte(tc.in), tc.name, []byte(tc.val))
		if string(out) != tc.want || ok != (tc.want != "") {
			t.Errorf("ReplaceMember(%s) = %s %v, want %s", tc.in, out, ok, tc.want)
		}
	}
}

// FuzzReplaceMember: on any JSON object from an upstream, replacing a member yields valid JSON
// whose member is the new value and whose other members are unchanged; a missing member is
// reported, never invented. If it failed, a rewritten response could be corrupt or carry the
// unredacted value.
func FuzzReplaceMember(f *testing.F) {
	for _, s := range []string{`{"result":{"a":1}}`, ` {"x":"}","result" : [1,{"b":"\"}"}] ,"y":null} `,
		`{"a":{"result":1}}`, `{}`, `{"result":"\u0041"}`} {
		f.Add(s)
	}
	f.Add(`{"result":1,"result":2}`)
	f.Fuzz(func(t *testing.T, in string) {
		if !json.Valid([]byte(in)) {
			return
		}
		var before map[string]json.RawMessage
		if json.Unmarshal([]byte(in), &before) != nil {
			return
		}
		out, ok := ReplaceMember([]byte(in), "result", []byte(`"R"`))
		if strings.Count(in, `"result"`) > 1 && !ok {
			return // possibly the member twice, which is refused
		}
		if _, has := before["result"]; has != ok {
			t.Fatalf("ReplaceMember(%s) ok=%v, member present=%v", in, ok, has)
		}
		if !ok {
			return
		}
		var after map[string]json.RawMessage
		if err := json.Unmarshal(out, &after); err != nil {
			t.Fatalf("output %s is not a JSON object: %v", out, err)
		}
		if string(after["result"]) != `"R"` || len(after) != len(before) {
			t.Fatalf("ReplaceMember(%s) = %s", in, out)
		}
	})
}
