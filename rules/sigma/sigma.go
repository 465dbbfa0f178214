// Package sigma holds mcpwatch's shipped Sigma rules for MCP traffic (logsource product mcpwatch,
// category mcp_call), embedded so the detect stage and `mcpwatch sigma check|test` can load the
// shipped set without files on disk: sigma.Load(rules.FS, ".") with the engine of package
// detectors/sigma.
//
// Every rule file <stem>.yml has a test file tests/<stem>.yaml listing events that must and must
// not match it; the package's tests load the set with the real engine, check those events and
// run every rule over clean generated traffic (docs/sigma.md, "Shipped rules").
package sigmarules

import "embed"

// FS holds the shipped rule files (*.yml) at its root. The tests directory is not embedded.
//
//go:embed *.yml
var FS embed.FS
