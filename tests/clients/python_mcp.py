"""An assistant built on the Python MCP SDK (`pip install mcp`) driving `runbook mcp`.

Usage: python_mcp.py MODE RUNBOOK CONFIG CWD [ARG ...]

MODE is `legacy` (the initialize handshake) or `auto` (discovery, falling back to the
handshake). Each call given as JSON lines on standard input (`{"tool": ..., "arguments": ...}`)
is made in order; standard output gets one JSON object: the tool names listed and each call's
result (`structuredContent`, `isError`) or the error it raised.
"""

import asyncio
import json
import sys

from mcp import Client, StdioServerParameters
from mcp.types import Implementation


async def main() -> None:
    mode, runbook, config, cwd, *args = sys.argv[1:]
    calls = [json.loads(line) for line in sys.stdin if line.strip()]
    server = StdioServerParameters(command=runbook, args=["--config", config, "mcp", *args], cwd=cwd)
    info = Implementation(name="python-assistant", version="1.0")
    out = {"tools": [], "calls": []}
    async with Client(server, mode=mode, client_info=info, read_timeout_seconds=60) as client:
        listed = await client.list_tools()
        out["tools"] = sorted(t.name for t in listed.tools)
        for call in calls:
            try:
                r = await client.call_tool(call["tool"], call.get("arguments", {}))
                out["calls"].append({"result": r.structured_content, "isError": bool(r.is_error)})
            except Exception as e:  # a protocol error is an answer too
                out["calls"].append({"error": str(e)})
    print(json.dumps(out))


asyncio.run(main())
