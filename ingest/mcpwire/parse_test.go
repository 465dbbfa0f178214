package mcpwire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// The classifier decides what is audited and what is enforced: a wrong method or tool name is a
// wrong audit record or a quarantine bypass.
func TestParseMessage(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want Message // compared on the fields set here
	}{
		{"tools/call", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"db_query","arguments":{"sql":"select 1"}}}`,
			Message{Kind: KindRequest, ID: "7", Method: "tools/call", Tool: "db_query", ArgumentBytes: len(`{"sql":"select 1"}`),
				Arguments: json.RawMessage(`{"sql":"select 1"}`)}},
		{"string id canonical", `{"jsonrpc":"2.0","id":"\u0061b","method":"ping"}`,
			Message{Kind: KindRequest, ID: `"ab"`, Method: "ping"}},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			Message{Kind: KindNotification, Method: "notifications/initialized"}},
		{"initialize", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","clientInfo":{"name":"claude","version":"1.2"},"capabilities":{}}}`,
			Message{Kind: KindRequest, ID: "0", Method: "initialize", ProtocolVersion: "2025-11-25", ClientName: "claude", ClientVersion: "1.2"}},
		{"2026 meta", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"go","version":"1"},"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}}`,
			Message{Kind: KindRequest, ID: "1", Method: "tools/list", ProtocolVersion: "2026-07-28", ClientName: "go", ClientVersion: "1",
				TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7"}},
		{"bad traceparent ignored", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"traceparent":"00-XYZ"}}}`,
			Message{Kind: KindRequest, ID: "1", Method: "ping"}},
		{"resources/read", `{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}`,
			Message{Kind: KindRequest, ID: "2", Method: "resources/read", ResourceURI: "file:///etc/passwd"}},
		{"prompts/get", `{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"summarize"}}`,
			Message{Kind: KindRequest, ID: "3", Method: "prompts/get", Prompt: "summarize"}},
		{"result", `{"jsonrpc":"2.0","id":7,"result":{"content":[]}}`,
			Message{Kind: KindResponse, ID: "7"}},
		{"error", `{"jsonrpc":"2.0","id":"x","error":{"code":-32601,"message":"no"}}`,
			Message{Kind: KindResponse, ID: `"x"`, IsError: true, ErrorCode: -32601}},
		{"error with null id", `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}`,
			Message{Kind: KindResponse, ID: "null", IsError: true, ErrorCode: -32700}},
		{"ambiguous _meta goes unread", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","TraceParent":"x"}}}`,
			Message{Kind: KindRequest, ID: "1", Method: "ping"}},
		{"progress token asked for", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"t","_meta":{"progressToken":"p\u0031"}}}`,
			Message{Kind: KindRequest, ID: "5", Method: "tools/call", Tool: "t", ProgressToken: `"p1"`}},
		{"progress reported", `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1.0,"progress":0.5}}`,
			Message{Kind: KindNotification, Method: "notifications/progress", ProgressToken: "1"}},
		{"progressToken elsewhere is not one", `{"jsonrpc":"2.0","id":6,"method":"ping","params":{"progressToken":1}}`,
			Message{Kind: KindRequest, ID: "6", Method: "ping"}},
		{"unknown members ignored", `{"jsonrpc":"2.0","id":1,"method":"ping","extra":{"a":[1,2]}}`,
			Message{Kind: KindRequest, ID: "1", Method: "ping"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMessage([]byte(tc.in))
			if err != nil {
				t.Fatalf("ParseMessage: %v", err)
			}
			got.Result = nil
			if string(got.Raw) != tc.in {
				t.Fatalf("raw %q, want the input", got.Raw)
			}
			got.Raw = nil
			tc.want.Size = len(tc.in)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// Everything refused here is never forwarded. The ambiguity cases are the ones where parsers
// disagree, so that the upstream could act on something other than what the gateway checked.
func TestParseRejects(t *testing.T) {
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
		{"long id", `{"jsonrpc":"2.0","id":"` + strings.Repeat("a", MaxIDLen) + `","method":"ping"}`, CodeInvalidRequest},
		{"long method", `{"jsonrpc":"2.0","id":1,"method":"` + strings.Repeat("a", MaxMethodLen+1) + `"}`, CodeInvalidRequest},
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
		{"tools/call long name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + strings.Repeat("t", MaxFieldLen+1) + `"}}`, CodeInvalidParams},
		{"empty batch", `[]`, CodeInvalidRequest},
		{"batch with a bad element", `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0"}]`, CodeInvalidRequest},
		{"batch with a repeated id", `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":1,"method":"tools/list"}]`, CodeInvalidRequest},
		{"broken batch", `[{"jsonrpc":"2.0","id":1,"method":"ping"},`, CodeParseError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msgs, _, err := Parse([]byte(tc.in))
			if err == nil {
				t.Fatalf("accepted: %+v", msgs)
			}
			if err.Code != tc.code {
				t.Fatalf("code %d (%s), want %d", err.Code, err.Message, tc.code)
			}
		})
	}
}

// A batch (2025-03-26) is audited element by element.
func TestParseBatch(t *testing.T) {
	msgs, batch, err := Parse([]byte(` [{"jsonrpc":"2.0","id":1,"method":"tools/list"},
		{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":0}},
		{"jsonrpc":"2.0","id":"s1","result":{"action":"accept"}}]`))
	if err != nil || !batch || len(msgs) != 3 {
		t.Fatalf("Parse: %v batch=%v n=%d", err, batch, len(msgs))
	}
	if msgs[0].Kind != KindRequest || msgs[1].Kind != KindNotification || msgs[2].Kind != KindResponse {
		t.Fatalf("kinds: %v %v %v", msgs[0].Kind, msgs[1].Kind, msgs[2].Kind)
	}
}

// The tools hash is how detectors notice a server changing its tool definitions under a client
// (a "rug pull"); it must ignore formatting and change with content.
func TestInspectResult(t *testing.T) {
	a := InspectResult("tools/list", []byte(`{"tools":[{"name":"a","inputSchema":{"type":"object"}}]}`))
	b := InspectResult("tools/list", []byte(`{ "tools" : [ { "name" : "a", "inputSchema" : { "type" : "object" } } ] }`))
	c := InspectResult("tools/list", []byte(`{"tools":[{"name":"a","description":"now evil","inputSchema":{"type":"object"}}]}`))
	if a.ToolsHash == "" || a.ToolsHash != b.ToolsHash || a.ToolsHash == c.ToolsHash {
		t.Fatalf("hashes: %q %q %q", a.ToolsHash, b.ToolsHash, c.ToolsHash)
	}
	if !InspectResult("tools/call", []byte(`{"content":[],"isError":true}`)).ToolError {
		t.Fatal("isError not seen")
	}
	if v := InspectResult("initialize", []byte(`{"protocolVersion":"2025-06-18"}`)).ProtocolVersion; v != "2025-06-18" {
		t.Fatalf("negotiated version %q", v)
	}
}

func TestClip(t *testing.T) {
	if got := Clip("héllo", 2); got != "h" {
		t.Fatalf("clip split a rune: %q", got)
	}
	if got := Clip("abc", 5); got != "abc" {
		t.Fatalf("clip changed a short string: %q", got)
	}
}

// FuzzParse feeds untrusted bodies to the parser. It must never panic, and whatever it accepts
// must be self-consistent: a request has an id, a notification has none, every message a method
// or a response role.
func FuzzParse(f *testing.F) {
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
		msgs, _, err := Parse(b)
		if err != nil {
			if err.Code != CodeParseError && err.Code != CodeInvalidRequest && err.Code != CodeInvalidParams {
				t.Fatalf("unexpected error code %d", err.Code)
			}
			return
		}
		if len(msgs) == 0 {
			t.Fatal("accepted a body with no messages")
		}
		for _, m := range msgs {
			switch m.Kind {
			case KindRequest:
				if m.ID == "" || m.ID == "null" || m.Method == "" {
					t.Fatalf("request without id or Method: %+v", m)
				}
				if m.Method == "tools/call" && m.Tool == "" {
					t.Fatalf("tools/call accepted without a tool name: %q", b)
				}
			case KindNotification:
				if m.ID != "" || m.Method == "" {
					t.Fatalf("notification with id or without Method: %+v", m)
				}
			case KindResponse:
				if m.ID == "" || m.Method != "" {
					t.Fatalf("response without id or with Method: %+v", m)
				}
			default:
				t.Fatalf("accepted a message of no kind: %q", b)
			}
			if len(m.ID) > MaxIDLen+maxPadding+2 || len(m.Method) > MaxMethodLen {
				t.Fatalf("limits not enforced: %+v", m)
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	body := []byte(`{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"db_query","arguments":{"sql":"select * from sales where region = 'emea' limit 100","timeout":30},"_meta":{"progressToken":"p1","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Parse(body); err != nil {
			b.Fatal(err)
		}
	}
}

// membersReference is the obvious implementation of [Members] on encoding/json's tokenizer, which
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
		got, err := Members(b, names...) // must not panic on any input
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
