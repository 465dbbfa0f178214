// Package mcpwire holds what every mcpwatch source of MCP audit events shares about the wire:
// the strict JSON-RPC parser ([Parse]), the one canonical form of request ids ([CanonicalID])
// that pairs a response with its request, clipping ([Clip]), JSON-RPC error bodies
// ([ErrorBody], [ErrorResponse]) and the audit-event builder ([Builder]) that turns a parsed
// message and the context it was seen in into an [event.Event], masking what clients and servers
// put in it.
//
// The Streamable HTTP gateway (ingest/mcp), the sandbox bridge (ingest/sandbox), the stdio wrapper
// (ingest/stdio) and the Go SDK hook (ingest/mcphook) all use it, so that the same message makes
// the same event, and the same response pairs with the same request, whichever way it was seen.
// It imports no stage: only the event model and the masker.
package mcpwire
