"""The official Python SDK client, for ingest/mcp's interop tests.

Connects over Streamable HTTP to MCP_URL with "Authorization: Bearer $MCP_TOKEN", lists the
tools, calls echo with {"text": $MCP_TEXT}, and prints one JSON object {tools, echo} on stdout.
"""

import asyncio
import json
import os

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def main() -> None:
    url, token = os.environ["MCP_URL"], os.environ["MCP_TOKEN"]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=20) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, *_):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                tools = await session.list_tools()
                echo = await session.call_tool("echo", {"text": os.environ.get("MCP_TEXT", "hi")})
                print(json.dumps({
                    "server": init.server_info.name,
                    "protocol": init.protocol_version,
                    "tools": sorted(t.name for t in tools.tools),
                    "echo": echo.model_dump(mode="json", by_alias=True, exclude_none=True),
                }))


asyncio.run(main())
