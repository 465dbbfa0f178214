// The official TypeScript SDK client, for ingest/mcp's interop tests: connects over Streamable
// HTTP to MCP_URL with "Authorization: Bearer $MCP_TOKEN", lists the tools, calls echo with
// {"text": $MCP_TEXT}, and prints one JSON object {server, tools, echo} on stdout.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const url = process.env.MCP_URL;
const token = process.env.MCP_TOKEN;
if (!url || !token) {
  console.error("usage: MCP_URL=... MCP_TOKEN=... [MCP_TEXT=...] node client.mjs");
  process.exit(2);
}
const client = new Client({ name: "ts-interop-client", version: "1.0.0" });
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
await client.connect(transport);
const tools = await client.listTools();
const echo = await client.callTool({ name: "echo", arguments: { text: process.env.MCP_TEXT ?? "hi" } });
console.log(JSON.stringify({
  server: client.getServerVersion(),
  protocol: transport.protocolVersion,
  session: transport.sessionId,
  tools: tools.tools.map((t) => t.name).sort(),
  echo,
}));
await transport.terminateSession();
await client.close();
