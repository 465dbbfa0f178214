package mcp

import "github.com/mcpwatch/mcpwatch/ingest/mcpwire"

// JSON-RPC error codes the gateway answers with. The standard ones come from JSON-RPC 2.0 (the
// parser's, [mcpwire]); CodeHeaderMismatch is the MCP code for Mcp-Method/Mcp-Name headers that
// contradict the body. mcpwatch's own codes sit in -32080..-32089 of the implementation-defined
// server range, clear of the codes MCP and its SDKs use (-32000/-32001 are the TypeScript SDK's
// connection-closed and request-timeout, -32002 resource-not-found, -32020..-32022 and -32042 the
// MCP protocol errors), so a client never mistakes a gateway refusal for an upstream failure.
const (
	CodeParseError     = mcpwire.CodeParseError
	CodeInvalidRequest = mcpwire.CodeInvalidRequest
	CodeInvalidParams  = mcpwire.CodeInvalidParams
	CodeHeaderMismatch = -32020

	// CodeDenied answers a call refused by an active revocation or quarantine (HTTP 403).
	CodeDenied = -32081
	// CodeUnauthenticated answers a request without a valid bearer token (HTTP 401).
	CodeUnauthenticated = -32082
	// CodeUpstreamUnavailable answers a call the upstream server could not be reached for (HTTP 502).
	CodeUpstreamUnavailable = -32084
	// CodeAuditUnavailable: the audit trail cannot take the call (Kafka unreachable and the spool
	// full) and the gateway fails closed rather than serve unaudited.
	CodeAuditUnavailable = -32083
)
