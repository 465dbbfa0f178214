package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// The classifier decides what is audited and what is enforced: a wrong method or tool name is a
// wrong audit record or a quarantine bypass.
func TestClassify(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want message // compared on the fields set here
	}{
		{"tools/call", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"db_query","arguments":{"sql":"select 1"}}}`,
			message{kind: kindRequest, id: "7", method: "tools/call", tool: "db_query", argBytes: len(`{"sql":"select 1"}`),
				args: json.RawMessage(`{"sql":"select 1"}`)}},
		{"string id canonical", `{"jsonrpc":"2.0","id":"\u0061b","method":"ping"}`,
			message{kind: kindRequest, id: `"ab"`, method: "ping"}},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			message{kind: kindNotification, method: "notifications/initialized"}},
		{"initialize", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","clientInfo":{"name":"claude","version":"1.2"},"capabilities":{}}}`,
			message{kind: kindRequest, id: "0", method: "initialize", protocolVersion: "2025-11-25", clientName: "claude", clientVersion: "1.2"}},
		{"2026 meta", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"go","version":"1"},"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}}`,
			message{kind: kindRequest, id: "1", method: "tools/list", protocolVersion: "2026-07-28", clientName: "go", clientVersion: "1",
				traceID: "4bf92f3577b34da6a3ce929d0e0e4736", spanID: "00f067aa0ba902b7"}},
		{"bad traceparent ignored", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"traceparent":"00-XYZ"}}}`,
			message{kind: kindRequest, id: "1", method: "ping"}},
		{"resources/read", `{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}`,
			message{kind: kindRequest, id: "2", method: "resources/read", resourceURI: "file:///etc/passwd"}},
		{"prompts/get", `{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"summarize"}}`,
			message{kind: kindRequest, id: "3", method: "prompts/get", prompt: "summarize"}},
		{"result", `{"jsonrpc":"2.0","id":7,"result":{"content":[]}}`,
			message{kind: kindResponse, id: "7"}},
		{"error", `{"jsonrpc":"2.0","id":"x","error":{"code":-32601,"message":"no"}}`,
			message{kind: kindResponse, id: `"x"`, isError: true, errorCode: -32601}},
		{"error with null id", `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}`,
			message{kind: kindResponse, id: "null", isError: true, errorCode: -32700}},
		{"ambiguous _meta goes unread", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","TraceParent":"x"}}}`,
			message{kind: kindRequest, id: "1", method: "ping"}},
		{"unknown members ignored", `{"jsonrpc":"2.0","id":1,"method":"ping","extra":{"a":[1,2]}}`,
			message{kind: kindRequest, id: "1", method: "ping"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := classify([]byte(tc.in))
			if err != nil {
				t.Fatalf("classify: %v", err)
			}
			got.result = nil
			if string(got.raw) != tc.in {
				t.Fatalf("raw %q, want the input", got.raw)
			}
			got.raw = nil
			tc.want.size = len(tc.in)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// Everything refused here is never forwarded. The ambiguity cases are the ones where parsers
// disagree, so that the upstream could act on something other than what the gateway checked.
func TestClassifyRejects(t *testing.T) {
	cases := []struct {
		name string
		in   string
		code int
	}{
		{"not json", `{"jsonrpc":`, CodeParseError},
		{"trailing data", `{"jsonrpc":"2.0","id":1,"method":"ping"} {}`, CodeParseError},
		{"invalid utf-8", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"ev\xffil\"}}", CodeParseError},
		{"empty", ``, CodeParseError},
		{"not an object", `"hello"`, CodeInvalidRequest},
		{"jsonrpc 1.0", `{"jsonrpc":"1.0","id":1,"method":"ping"}`, CodeInvalidRequest},
		{"no version", `{"id":1,"method":"ping"}`, CodeInvalidRequest},
		{"method not string", `{"jsonrpc":"2.0","id":1,"method":5}`, CodeInvalidRequest},
		{"empty method", `{"jsonrpc":"2.0","id":1,"method":""}`, CodeInvalidRequest},
		{"null request id", `{"jsonrpc":"2.0","id":null,"method":"ping"}`, CodeInvalidRequest},
		{"object id", `{"jsonrpc":"2.0","id":{},"method":"ping"}`, CodeInvalidRequest},
		{"long id", `{"jsonrpc":"2.0","id":"` + strings.Repeat("a", maxIDLen) + `","method":"ping"}`, CodeInvalidRequest},
		{"long method", `{"jsonrpc":"2.0","id":1,"method":"` + strings.Repeat("a", maxMethodLen+1) + `"}`, CodeInvalidRequest},
		{"method and result", `{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}`, CodeInvalidRequest},
		{"result and error", `{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":""}}`, CodeInvalidRequest},
		{"response without id", `{"jsonrpc":"2.0","result":{}}`, CodeInvalidRequest},
		{"nothing", `{"jsonrpc":"2.0","id":1}`, CodeInvalidRequest},
		{"array params", `{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}`, CodeInvalidRequest},
		{"duplicate method", `{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}`, CodeInvalidRequest},
		{"case-folded method", `{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call"}`, CodeInvalidRequest},
		{"case-folded id only", `{"jsonrpc":"2.0","ID":1,"method":"ping"}`, CodeInvalidRequest},
		{"duplicate tool name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","name":"drop_table"}}`, CodeInvalidRequest},
		{"case-folded tool name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","NAME":"drop_table"}}`, CodeInvalidRequest},
		{"long-s folded", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","argument\u017f":{}}}`, CodeInvalidRequest},
		{"escaped duplicate", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","n\u0061me":"drop_table"}}`, CodeInvalidRequest},
		{"tools/call without params", `{"jsonrpc":"2.0","id":1,"method":"tools/call"}`, CodeInvalidParams},
		{"tools/call without name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}`, CodeInvalidParams},
		{"tools/call numeric name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":42}}`, CodeInvalidParams},
		{"tools/call long name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + strings.Repeat("t", maxFieldLen+1) + `"}}`, CodeInvalidParams},
		{"empty batch", `[]`, CodeInvalidRequest},
		{"batch with a bad element", `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0"}]`, CodeInvalidRequest},
		{"batch with a repeated id", `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":1,"method":"tools/list"}]`, CodeInvalidRequest},
		{"broken batch", `[{"jsonrpc":"2.0","id":1,"method":"ping"},`, CodeParseError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msgs, _, err := parseBody([]byte(tc.in))
			if err == nil {
				t.Fatalf("accepted: %+v", msgs)
			}
			if err.code != tc.code {
				t.Fatalf("code %d (%s), want %d", err.code, err.msg, tc.code)
			}
		})
	}
}

// A batch (2025-03-26) is audited element by element.
func TestParseBatch(t *testing.T) {
	msgs, batch, err := parseBody([]byte(` [{"jsonrpc":"2.0","id":1,"method":"tools/list"},
		{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":0}},
		{"jsonrpc":"2.0","id":"s1","result":{"action":"accept"}}]`))
	if err != nil || !batch || len(msgs) != 3 {
		t.Fatalf("parseBody: %v batch=%v n=%d", err, batch, len(msgs))
	}
	if msgs[0].kind != kindRequest || msgs[1].kind != kindNotification || msgs[2].kind != kindResponse {
		t.Fatalf("kinds: %v %v %v", msgs[0].kind, msgs[1].kind, msgs[2].kind)
	}
}

// The tools hash is how detectors notice a server changing its tool definitions under a client
// (a "rug pull"); it must ignore formatting and change with content.
func TestInspectResult(t *testing.T) {
	a := inspectResult("tools/list", []byte(`{"tools":[{"name":"a","inputSchema":{"type":"object"}}]}`))
	b := inspectResult("tools/list", []byte(`{ "tools" : [ { "name" : "a", "inputSchema" : { "type" : "object" } } ] }`))
	c := inspectResult("tools/list", []byte(`{"tools":[{"name":"a","description":"now evil","inputSchema":{"type":"object"}}]}`))
	if a.toolsHash == "" || a.toolsHash != b.toolsHash || a.toolsHash == c.toolsHash {
		t.Fatalf("hashes: %q %q %q", a.toolsHash, b.toolsHash, c.toolsHash)
	}
	if !inspectResult("tools/call", []byte(`{"content":[],"isError":true}`)).toolError {
		t.Fatal("isError not seen")
	}
	if v := inspectResult("initialize", []byte(`{"protocolVersion":"2025-06-18"}`)).protocolVersion; v != "2025-06-18" {
		t.Fatalf("negotiated version %q", v)
	}
}

func TestClip(t *testing.T) {
	if got := clip("héllo", 2); got != "h" {
		t.Fatalf("clip split a rune: %q", got)
	}
	if got := clip("abc", 5); got != "abc" {
		t.Fatalf("clip changed a short string: %q", got)
	}
}

// FuzzClassify feeds untrusted bodies to the parser. It must never panic, and whatever it accepts
// must be self-consistent: a request has an id, a notification has none, every message a method
// or a response role.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"db_query","arguments":{"sql":"select 1"}}}`,
		`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","clientInfo":{"name":"c","version":"1"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":0.5}}`,
		`{"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"x"}]}}`,
		`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","NAME":"b"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}}`,
		"\xef\xbb\xbf{}", `[`, `{"a":`, `[[]]`, `{"jsonrpc":"2.0","id":1e400,"method":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, _, err := parseBody(b)
		if err != nil {
			if err.code != CodeParseError && err.code != CodeInvalidRequest && err.code != CodeInvalidParams {
				t.Fatalf("unexpected error code %d", err.code)
			}
			return
		}
		if len(msgs) == 0 {
			t.Fatal("accepted a body with no messages")
		}
		for _, m := range msgs {
			switch m.kind {
			case kindRequest:
				if m.id == "" || m.id == "null" || m.method == "" {
					t.Fatalf("request without id or method: %+v", m)
				}
				if m.method == "tools/call" && m.tool == "" {
					t.Fatalf("tools/call accepted without a tool name: %q", b)
				}
			case kindNotification:
				if m.id != "" || m.method == "" {
					t.Fatalf("notification with id or without method: %+v", m)
				}
			case kindResponse:
				if m.id == "" || m.method != "" {
					t.Fatalf("response without id or with method: %+v", m)
				}
			default:
				t.Fatalf("accepted a message of no kind: %q", b)
			}
			if len(m.id) > maxIDLen+2 || len(m.method) > maxMethodLen {
				t.Fatalf("limits not enforced: %+v", m)
			}
		}
	})
}

func BenchmarkClassify(b *testing.B) {
	body := []byte(`{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"db_query","arguments":{"sql":"select * from sales where region = 'emea' limit 100","timeout":30},"_meta":{"progressToken":"p1","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := parseBody(body); err != nil {
			b.Fatal(err)
		}
	}
}

// membersReference is the obvious implementation of [members] on encoding/json's tokenizer, which
// the fast scanner must agree with on every valid JSON input.
func membersReference(raw []byte, names ...string) ([]json.RawMessage, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	out := make([]json.RawMessage, len(names))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		for i, n := range names {
			if key == n {
				if out[i] != nil {
					return nil, false
				}
				out[i] = v
				break
			}
			if strings.EqualFold(key, n) {
				return nil, false
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, false
	}
	return out, true
}

// FuzzMembers checks the hand-written scanner against encoding/json: same members found, same
// inputs refused. A divergence is exactly the parser differential the scanner exists to close.
func FuzzMembers(f *testing.F) {
	for _, s := range []string{
		`{"name":"a","arguments":{"x":[1,{"y":"}"}]}}`, `{"name":"a","NAME":"b"}`, `{"n\u0061me":"a"}`,
		`{ "name" : "a" , "uri" : "b\"c" }`, `{}`, `[]`, `{"a":1}x`, `{"name":"a","name":"b"}`,
		`{"nam\u00e9":1}`, `{"\u212a":1}`, `{"uri":null,"_meta":{"k":true}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		names := []string{"name", "arguments", "uri", "_meta", "k"}
		got, err := members(b, names...) // must not panic on any input
		if !json.Valid(b) || !utf8.Valid(b) {
			return
		}
		want, ok := membersReference(b, names...)
		if ok != (err == nil) {
			t.Fatalf("scanner ok=%v (%v), reference ok=%v on %q", err == nil, err, ok, b)
		}
		if !ok {
			return
		}
		for i := range names {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("member %s: scanner %q, reference %q, input %q", names[i], got[i], want[i], b)
			}
		}
	})
}

// Headers that contradict the body would let header-routing infrastructure be told one call while
// the upstream runs another.
func TestHeaderMismatch(t *testing.T) {
	call, _ := classify([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"naïve"}}`))
	for name, tc := range map[string]struct {
		headers  map[string]string
		mismatch bool
	}{
		"no headers":      {nil, false},
		"matching":        {map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "naïve"}, false},
		"base64 name":     {map[string]string{"Mcp-Name": "=?base64?bmHDr3Zl?="}, false},
		"other method":    {map[string]string{"Mcp-Method": "tools/list"}, true},
		"other name":      {map[string]string{"Mcp-Name": "drop_table"}, true},
		"bad base64 name": {map[string]string{"Mcp-Name": "=?base64?***?="}, true},
	} {
		t.Run(name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.headers {
				h.Set(k, v)
			}
			if got := headerMismatch(h, &call) != ""; got != tc.mismatch {
				t.Fatalf("mismatch = %v", got)
			}
		})
	}
}
