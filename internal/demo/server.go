// Package demo is the demo MCP server and the demo traffic that `mcpwatch demo` runs through the
// gateway: a few well-behaved analysts and one principal that starts scraping.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// QueryArgs are the arguments of the db_query tool.
type QueryArgs struct {
	SQL string `json:"sql" jsonschema:"the SQL to run against the sales database"`
}

// ReadArgs are the arguments of the file_read tool.
type ReadArgs struct {
	Path string `json:"path" jsonschema:"the path of the report to read"`
}

// MailArgs are the arguments of the send_email tool.
type MailArgs struct {
	To   string `json:"to" jsonschema:"recipient e-mail address"`
	Body string `json:"body" jsonschema:"message body"`
}

// Server returns the demo "acme-data" MCP server: a sales database, a report store and a mailer.
func Server() *sdk.Server {
	s := sdk.NewServer(&sdk.Implementation{Name: "acme-data", Version: "1.0.0"}, nil)
	sdk.AddTool(s, &sdk.Tool{Name: "db_query", Description: "Run a read-only SQL query on the sales database."},
		func(_ context.Context, _ *sdk.CallToolRequest, a QueryArgs) (*sdk.CallToolResult, any, error) {
			if !strings.HasPrefix(strings.ToLower(strings.TrimSpace(a.SQL)), "select") {
				return nil, nil, fmt.Errorf("only SELECT is allowed")
			}
			return text("region,revenue\nAPAC,1200000\nEMEA,980000\n"), nil, nil
		})
	sdk.AddTool(s, &sdk.Tool{Name: "file_read", Description: "Read a report from the report store."},
		func(_ context.Context, _ *sdk.CallToolRequest, a ReadArgs) (*sdk.CallToolResult, any, error) {
			return text("contents of " + a.Path), nil, nil
		})
	sdk.AddTool(s, &sdk.Tool{Name: "send_email", Description: "Send an e-mail on behalf of the user."},
		func(_ context.Context, _ *sdk.CallToolRequest, a MailArgs) (*sdk.CallToolResult, any, error) {
			return text("queued message to " + a.To), nil, nil
		})
	return s
}

// Handler serves the demo server over Streamable HTTP.
func Handler() http.Handler {
	s := Server()
	return sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil)
}

func text(s string) *sdk.CallToolResult {
	return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: s}}}
}

// ServeStdio runs the demo server on stdin/stdout until the client goes away or ctx ends: the
// server `mcpwatch bench response --mode quarantine` runs in a sandbox.
func ServeStdio(ctx context.Context) error {
	err := Server().Run(ctx, &sdk.StdioTransport{})
	if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
