// Package mcphook audits MCP servers that embed mcpwatch instead of sitting behind its gateway:
// middleware for servers built on the official Go MCP SDK
// (github.com/modelcontextprotocol/go-sdk/mcp) that publishes the audit events the gateway
// (ingest/mcp) publishes for the same traffic, with [Transport] "embedded" in place of the
// gateway's transport. Use it for stdio servers, for servers the gateway cannot front, or next
// to the gateway to see what reached the server.
//
// Install both middlewares. The SDK runs the middleware added last first: add the receiving one
// after any other receiving middleware, so that it sees every request as the client sent it and
// every answer as the client gets it, and the sending one before any other (sdk being
// github.com/modelcontextprotocol/go-sdk/mcp):
//
//	hook, err := mcphook.New(mcphook.Config{Tenant: "acme", ServerName: "billing"}, pub, logger)
//	if err != nil {
//		return err
//	}
//	server := sdk.NewServer(&sdk.Implementation{Name: "billing", Version: "1.0.0"}, nil)
//	server.AddSendingMiddleware(hook.SendingMiddleware())
//	// ... the server's own middleware, if any ...
//	server.AddReceivingMiddleware(hook.Middleware())
//	// ... add tools, resources, prompts; then serve over stdio or Streamable HTTP, e.g. behind
//	// auth.RequireBearerToken so that each request carries the caller's token information.
//
// pub is any [Publisher]. To send the events to mcpwatch's raw topic on Kafka, as the gateway
// does, use the gateway's publisher, which satisfies the interface:
//
//	cl, err := kgo.NewClient(kgo.SeedBrokers("kafka:9092"))
//	...
//	pub := mcp.NewKafkaPublisher(cl, "mcpwatch.raw.v1", logger, prometheus.DefaultRegisterer)
//
// (mcp being github.com/mcpwatch/mcpwatch/ingest/mcp here; flush cl at shutdown.) Publish runs on
// the request path and must not block: the Kafka publisher hands records to the producer's
// buffer and drops and counts when it is full.
//
// What the events carry:
//   - the principal from [Config.Principal], by default the SDK's [auth.TokenInfo] mapped by
//     [TokenPrincipal]; messages the server sends carry the principal of the request they
//     were sent while handling, or else the last one seen on the session;
//   - the session id the transport gives ([github.com/modelcontextprotocol/go-sdk/mcp.ServerSession.ID]: the Mcp-Session-Id of stateful
//     Streamable HTTP, empty on stdio and stateless HTTP);
//   - request ids the hook makes, since the SDK does not show middleware the JSON-RPC id (see
//     [Hook.Middleware]): they pair each answer with its request, but do not match the
//     gateway's ids for the same call;
//   - trace context from the message's _meta.traceparent or the HTTP Traceparent header;
//   - tool arguments only by size unless [Config.MaskArguments] is set; the hook never logs
//     them, and never copies an error's text, which may quote them, into an event;
//   - resource URIs, prompt names and the client's name and version masked as the gateway masks
//     them (github.com/mcpwatch/mcpwatch/ingest/mcpwire builds the events of both), with the
//     default kinds: credentials in query parameters and user information removed, personal
//     data replaced, findings counted in [event.Event.PII];
//   - for tools/list answers, [ToolsHash], equal to the gateway's hash of the same answer.
//
// Auditing never breaks the server: panics in the publisher, the principal function, the
// masker or the hook itself are recovered and logged (rate-limited), and the call proceeds.
//
// [auth.TokenInfo]: https://pkg.go.dev/github.com/modelcontextprotocol/go-sdk/auth#TokenInfo
package mcphook
