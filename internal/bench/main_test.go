package bench

import (
	"context"
	"os"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/internal/demo"
)

// stdioServerEnv makes the test binary the demo MCP server on stdio, for the quarantine
// benchmark to run in a sandbox.
const stdioServerEnv = "MCPWATCH_BENCH_TEST_STDIO_SERVER"

// The harness starts servers, load workers, Kafka clients and pipeline stages; every one of them
// must be gone when a run returns.
func TestMain(m *testing.M) {
	if os.Getenv(stdioServerEnv) != "" {
		_ = demo.Server().Run(context.Background(), &sdk.StdioTransport{})
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}
