package mcp

import (
	"net/http"
	"testing"

	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
)

// Headers that contradict the body would let header-routing infrastructure be told one call while
// the upstream runs another.
func TestHeaderMismatch(t *testing.T) {
	call, _ := mcpwire.ParseMessage([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"naïve"}}`))
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
