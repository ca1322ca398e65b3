#!/usr/bin/env python3
"""MCP client scenarios for mcp-bridge, on the official Python SDK (`mcp`, PyPI).

    client.py SCENARIO --stdio BRIDGE_BINARY      (AGENT_RUNTIME_ADDR from the environment)
    client.py SCENARIO --url http://127.0.0.1:PORT/mcp [--token T]

Scenarios: core, contexts, browser, raw (stdio only: JSON-RPC edge cases), auto (mcp.Client's
discover-first connect), bench, egress (issue 15: allow_domains and a refusal).
Each asserts every field a user would look at and exits non-zero with a message on the first
mismatch. The last stdout line is a JSON summary (measurements the Rust test prints).
"""
import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from urllib.parse import urlsplit

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

SPEC_TOOLS = {
    "sandbox_create", "sandbox_destroy", "browser_goto", "browser_click", "browser_type",
    "browser_snapshot", "code_run", "file_read", "file_write", "file_list", "create_context",
    "run_code", "list_contexts", "stop_context",
}
EXTENDED_BROWSER = {
    "browser_aria_snapshot", "browser_press", "browser_scroll", "browser_navigate", "browser_wait",
    "browser_select_option", "browser_hover", "browser_evaluate", "browser_tabs", "browser_dialog",
    "browser_upload_file", "browser_screenshot",
}
SUMMARY = {}


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def log(*a):
    print("[client]", *a, file=sys.stderr, flush=True)


def payload(result):
    """The JSON text of a tool result (first content block)."""
    check(result.content and result.content[0].type == "text", f"no text content: {result}")
    return json.loads(result.content[0].text)


async def call(session, name, args=None, **kw):
    """Calls a tool that must succeed; returns its JSON."""
    t = time.monotonic()
    r = await session.call_tool(name, args or {}, **kw)
    data = payload(r)
    log(f"{name} {int((time.monotonic() - t) * 1000)} ms -> {json.dumps(data)[:300]}")
    check(not r.is_error, f"{name} failed: {data}")
    if isinstance(data, dict):
        # Image data travels in image blocks and structuredContent, never in the text a model
        # reads: there the field holds a short note ("PNG WxH, N bytes, attached as image").
        structured = dict(r.structured_content or {})
        for key, value in data.items():
            if isinstance(value, str) and value.startswith("PNG ") and value.endswith("attached as image"):
                check(str(structured.get(key, ""))[:8] == "iVBORw0K", f"{name}: {key} is not in structuredContent")
                structured[key] = value
        check(structured == data, f"{name}: structured content differs from text: {r.structured_content}")
    return data, r


async def call_err(session, name, args=None):
    """Calls a tool that must fail as a tool result; returns its JSON."""
    r = await session.call_tool(name, args or {})
    data = payload(r)
    log(f"{name} (expected error) -> {data}")
    check(r.is_error, f"{name} should have failed: {data}")
    return data


def keys(d, expected, name):
    check(expected <= set(d), f"{name}: missing fields {expected - set(d)} in {d}")


# --------------------------------------------------------------------------------------------
async def core(session):
    listed = await session.list_tools()
    names = {t.name for t in listed.tools}
    check(SPEC_TOOLS <= names, f"missing spec tools: {SPEC_TOOLS - names}")
    check(EXTENDED_BROWSER <= names, f"missing browser tools: {EXTENDED_BROWSER - names}")
    size = len(json.dumps({"tools": [t.model_dump(by_alias=True, exclude_none=True) for t in listed.tools]}))
    SUMMARY["tools"] = len(names)
    SUMMARY["tools_list_chars"] = size
    for t in listed.tools:
        check(t.description and len(t.description) <= 200, f"{t.name}: description missing or long")
        check(t.input_schema.get("type") == "object", f"{t.name}: schema is not an object")

    # code_run with no sandbox yet: the session creates one on first need.
    d, _ = await call(session, "code_run", {"language": "shell", "code": "echo first; echo oops >&2; exit 3"})
    keys(d, {"success", "exitCode", "stdout", "stderr", "duration", "killed"}, "code_run")
    check(d["stdout"] == "first\n" and d["stderr"] == "oops\n", f"code_run output: {d}")
    check(d["exitCode"] == 3 and d["success"] is False and d["killed"] is False, f"code_run exit: {d}")
    check(isinstance(d["duration"], int) and d["duration"] >= 0, f"duration: {d}")
    d, _ = await call(session, "sandbox_list")
    check(len(d["sandboxes"]) == 1, f"one sandbox created on first need: {d}")
    auto_id = d["sandboxes"][0]["sandbox_id"]

    d, _ = await call(session, "code_run", {"language": "node", "code": "console.log(6*7)"})
    check(d["stdout"] == "42\n" and d["success"] is True, f"node: {d}")

    # Timeout: killed, with the reason.
    d, _ = await call(session, "code_run", {"language": "python", "code": "import time\ntime.sleep(30)", "timeout": 1})
    check(d["killed"] is True and d["success"] is False, f"timeout kill: {d}")

    # sandbox_create: a second sandbox; then sandbox_id becomes necessary.
    d, _ = await call(session, "sandbox_create", {"memory": "512m", "cpu": 1, "timeout": 600})
    keys(d, {"sandbox_id", "status"}, "sandbox_create")
    check(d["sandbox_id"].startswith("sb-") and d["status"] == "running", f"sandbox_create: {d}")
    sb = d["sandbox_id"]
    e = await call_err(session, "file_list", {})
    check(e["code"] == "BAD_REQUEST" and "sandbox_id" in e["error"], f"ambiguous sandbox: {e}")
    # The tests run the bridge with a per-session cap of 2.
    e = await call_err(session, "sandbox_create", {})
    check(e["code"] == "RESOURCE_EXHAUSTED" and "sandbox_destroy" in e["error"], f"session cap: {e}")

    # Files.
    d, _ = await call(session, "file_write", {"path": "notes/hello.txt", "content": "héllo\nworld\n", "sandbox_id": sb})
    check(d == {"success": True, "path": "/workspace/notes/hello.txt"}, f"file_write: {d}")
    d, _ = await call(session, "file_read", {"path": "/workspace/notes/hello.txt", "sandbox_id": sb})
    check(d["content"] == "héllo\nworld\n" and d["size"] == len("héllo\nworld\n".encode()), f"file_read: {d}")
    d, _ = await call(session, "file_list", {"sandbox_id": sb})
    check({"name": "notes", "type": "directory"} in d["items"], f"file_list: {d}")
    d, _ = await call(session, "file_list", {"path": "notes", "sandbox_id": sb})
    check([(i["name"], i["type"]) for i in d["items"]] == [("hello.txt", "file")], f"file_list notes: {d}")
    e = await call_err(session, "file_read", {"path": "missing.txt", "sandbox_id": sb})
    check(e["code"] == "NOT_FOUND", f"missing file: {e}")
    d, _ = await call(session, "file_remove", {"path": "notes", "recursive": True, "sandbox_id": sb})
    check(d == {"success": True}, f"file_remove: {d}")

    # Errors are tool results a model can act on.
    e = await call_err(session, "code_run", {"language": "cobol", "code": "x", "sandbox_id": sb})
    check("cobol" in json.dumps(e) or "unknown variant" in json.dumps(e), f"bad language: {e}")
    e = await call_err(session, "browser_click", {"sandbox_id": sb})
    check(e["code"] == "BAD_REQUEST" and "ref_id" in e["error"], f"click without target: {e}")
    e = await call_err(session, "code_run", {"language": "shell", "code": "true", "sandbox_id": "sb-nope"})
    check(e["code"] in ("NOT_FOUND", "BAD_REQUEST"), f"unknown sandbox: {e}")

    # Output streams as progress while it runs (the call carries a progressToken).
    progress = []
    started = time.monotonic()

    async def on_progress(p, total, message):
        progress.append((time.monotonic() - started, message))

    code = "for i in 1 2 3; do echo tick $i; sleep 0.5; done"
    d, _ = await call(session, "code_run", {"language": "shell", "code": code, "sandbox_id": sb},
                      progress_callback=on_progress)
    elapsed = time.monotonic() - started
    check(d["stdout"] == "tick 1\ntick 2\ntick 3\n", f"progress run: {d}")
    msgs = [m for _, m in progress]
    check(any("tick 1" in (m or "") for m in msgs), f"no progress with output: {progress}")
    check(progress and progress[0][0] < elapsed - 0.5, f"progress did not arrive while running: {progress}, total {elapsed}")

    # Cancellation: cancelling the call sends notifications/cancelled; the run stops.
    code = "for i in $(seq 1 200); do echo $i >> /workspace/ticks; sleep 0.1; done"
    with anyio.move_on_after(1.5):
        await session.call_tool("code_run", {"language": "shell", "code": code, "sandbox_id": sb})
        raise AssertionError("the long run finished instead of being cancelled")
    await anyio.sleep(1.0)
    d1, _ = await call(session, "code_run", {"language": "shell", "code": "wc -l < /workspace/ticks", "sandbox_id": sb})
    await anyio.sleep(1.0)
    d2, _ = await call(session, "code_run", {"language": "shell", "code": "wc -l < /workspace/ticks", "sandbox_id": sb})
    check(d1["stdout"] == d2["stdout"] and int(d1["stdout"]) < 100, f"run kept going after cancel: {d1['stdout']} -> {d2['stdout']}")

    # sandbox_destroy, and the session's other sandbox is then implicit again.
    d, _ = await call(session, "sandbox_destroy", {"sandbox_id": sb})
    check(d == {"success": True}, f"sandbox_destroy: {d}")
    d, _ = await call(session, "code_run", {"language": "python", "code": "print('back')"})
    check(d["stdout"] == "back\n", f"implicit sandbox after destroy: {d}")
    d, _ = await call(session, "sandbox_list")
    check([s["sandbox_id"] for s in d["sandboxes"]] == [auto_id], f"sandbox_list: {d}")
    # Left for the session end to clean up: auto_id.
    SUMMARY["left_for_cleanup"] = auto_id


async def logging_flow(session):
    """Without a progressToken, output goes out as logging notifications."""
    got = []
    session_logs.append(got)
    d, _ = await call(session, "code_run", {"language": "shell", "code": "echo to-log; echo to-err >&2"})
    await anyio.sleep(0.2)
    texts = [json.dumps(x) for x in got]
    check(any("to-log" in t for t in texts) and any("to-err" in t for t in texts), f"logging: {got}")


session_logs = []


async def on_log(params):
    for sink in session_logs:
        sink.append(params.data)


# --------------------------------------------------------------------------------------------
async def contexts(session):
    d, _ = await call(session, "create_context", {"name": "analysis", "language": "python"})
    keys(d, {"context_id", "name", "language", "status", "created_at"}, "create_context")
    check(d["context_id"].startswith("ctx-") and d["name"] == "analysis" and d["language"] == "python", f"create_context: {d}")
    ctx = d["context_id"]
    d, _ = await call(session, "run_code", {"context_id": ctx, "code": "x = 100\nprint(x)"})
    keys(d, {"stdout", "stderr", "success", "execution_time"}, "run_code")
    check(d["stdout"] == "100\n" and d["success"] is True and isinstance(d["execution_time"], (int, float)), f"run_code: {d}")
    d, _ = await call(session, "run_code", {"context_id": ctx, "code": "print(x + 1)"})
    check(d["stdout"] == "101\n" and d["success"] is True, f"state kept: {d}")
    d, _ = await call(session, "run_code", {"context_id": ctx, "code": "x * 2"})
    check(d.get("results") == ["200"], f"expression result: {d}")
    d, _ = await call(session, "run_code", {"context_id": ctx, "code": "1/0"})
    check(d["success"] is False and d["error"]["name"] == "ZeroDivisionError", f"exception: {d}")
    r = await session.call_tool("list_contexts", {})
    check(not r.is_error, f"list_contexts failed: {r}")
    lst = payload(r)
    log(f"list_contexts -> {lst}")
    check(isinstance(lst, list) and [c["context_id"] for c in lst] == [ctx], f"list_contexts: {lst}")
    keys(lst[0], {"context_id", "name", "language", "status", "created_at"}, "list_contexts item")
    d, _ = await call(session, "stop_context", {"context_id": ctx})
    check(d == {"success": True}, f"stop_context: {d}")
    e = await call_err(session, "run_code", {"context_id": ctx, "code": "print(x)"})
    check(e == {"error": "Context not found", "code": "CONTEXT_NOT_FOUND"}, f"stopped context: {e}")
    e = await call_err(session, "run_code", {"context_id": "ctx-never", "code": "1"})
    check(e == {"error": "Context not found", "code": "CONTEXT_NOT_FOUND"}, f"unknown context: {e}")
    # A context left running is stopped with the session's sandbox at session end.
    d, _ = await call(session, "create_context", {"name": "left", "language": "python"})


# --------------------------------------------------------------------------------------------
FORM = """<!doctype html>
<html><head><title>Greeter</title></head>
<body>
<h1>Greeter</h1>
<form action="result.html" method="get">
  <input type="text" name="who" placeholder="Your name">
  <button type="submit">Greet</button>
</form>
</body></html>
"""
RESULT = """<!doctype html>
<html><head><title>Greeting</title></head>
<body><p id="out"></p>
<script>
const who = new URLSearchParams(location.search).get('who');
document.getElementById('out').textContent = 'Hello, ' + who + '! Order #4711 confirmed.';
</script></body></html>
"""


async def browser(session):
    """The spec's example task on a local page."""
    d, _ = await call(session, "sandbox_create", {})
    sb = d["sandbox_id"]
    check(d["status"] == "running", f"sandbox_create: {d}")
    await call(session, "file_write", {"path": "/workspace/form.html", "content": FORM})
    await call(session, "file_write", {"path": "/workspace/result.html", "content": RESULT})

    d, _ = await call(session, "browser_goto", {"url": "file:///workspace/form.html"})
    keys(d, {"url", "title"}, "browser_goto")
    check(d["url"] == "file:///workspace/form.html" and d["title"] == "Greeter", f"goto: {d}")

    d, r = await call(session, "browser_snapshot", {})
    keys(d, {"url", "title", "screenshot", "text", "elements"}, "browser_snapshot")
    check(d["title"] == "Greeter" and "Greeter" in d["text"], f"snapshot: {d['title']} {d['text']!r}")
    check(r.structured_content["screenshot"][:8] == "iVBORw0K", "screenshot is not a base64 PNG")
    check("attached as image" in d["screenshot"] and "iVBORw0K" not in r.content[0].text,
          f"the text carries image data: {d['screenshot'][:80]!r}")
    check(any(c.type == "image" and c.mime_type == "image/png" for c in r.content), "snapshot has no image block")
    lines = d["elements"].splitlines()
    inp = next((re.match(r"\[(ref_\d+)\]", l).group(1) for l in lines if "input" in l and re.match(r"\[ref_\d+\]", l)), None)
    btn = next((re.match(r"\[(ref_\d+)\]", l).group(1) for l in lines if "button" in l and "Greet" in l and re.match(r"\[ref_\d+\]", l)), None)
    check(inp and btn, f"refs for the input and the button in: {d['elements']!r}")

    d, _ = await call(session, "browser_type", {"ref_id": inp, "text": "Ada"})
    keys(d, {"url", "title"}, "browser_type")
    d, _ = await call(session, "browser_click", {"ref_id": btn})
    keys(d, {"url", "title", "navigated"}, "browser_click")
    check(d["navigated"] is True and "result.html" in d["url"] and d["title"] == "Greeting", f"click: {d}")

    d, _ = await call(session, "browser_snapshot", {})
    text = d["text"]
    check("Hello, Ada!" in text, f"page text after submit: {text!r}")

    code = f"import re\ntext = {json.dumps(text)}\nm = re.search(r'Hello, (\\w+)! Order #(\\d+)', text)\nprint(m.group(1), m.group(2))"
    d, _ = await call(session, "code_run", {"language": "python", "code": code})
    check(d["stdout"] == "Ada 4711\n" and d["success"] is True, f"parse page text: {d}")

    d, _ = await call(session, "file_write", {"path": "result.txt", "content": d["stdout"]})
    check(d == {"success": True, "path": "/workspace/result.txt"}, f"file_write: {d}")
    d, _ = await call(session, "file_read", {"path": "result.txt"})
    check(d == {"content": "Ada 4711\n", "size": 9}, f"file_read: {d}")
    d, _ = await call(session, "file_list", {})
    names = {(i["name"], i["type"]) for i in d["items"]}
    check({("form.html", "file"), ("result.html", "file"), ("result.txt", "file")} <= names, f"file_list: {d}")

    # A screenshot goes out as an image block.
    d, r = await call(session, "browser_screenshot", {})
    check(any(c.type == "image" for c in r.content), "browser_screenshot has no image block")

    d, _ = await call(session, "sandbox_destroy", {"sandbox_id": sb})
    check(d == {"success": True}, f"sandbox_destroy: {d}")


# --------------------------------------------------------------------------------------------
async def egress(session):
    """Issue 15's flow: a sandbox created with allow_domains browses an allowed HTTPS site (the
    test's host resolves the test names to its loopback servers and trusts their test CA); a
    blocked site is an isError result naming the policy. EGRESS_ALLOWED_URL and
    EGRESS_BLOCKED_URL name the two sites (https://NAME/)."""
    allowed, blocked = os.environ["EGRESS_ALLOWED_URL"], os.environ["EGRESS_BLOCKED_URL"]
    allowed_host, blocked_host = urlsplit(allowed).hostname, urlsplit(blocked).hostname
    d, _ = await call(session, "sandbox_create", {"allow_domains": [allowed_host]})
    sb = d["sandbox_id"]
    check(d["status"] == "running", f"sandbox_create: {d}")
    check(set(d) == {"sandbox_id", "status"}, f"sandbox_create keeps the contract's shape: {d}")

    d, _ = await call(session, "browser_goto", {"url": allowed})
    check(d["title"] == f"Egress test: {allowed_host}", f"browser_goto {allowed}: {d}")
    d, r = await call(session, "browser_snapshot", {})
    check(f"Hello from {allowed_host} over https" in d["text"], f"browser_snapshot of {allowed}: {d['text']!r}")
    check(any(c.type == "image" for c in r.content), "browser_snapshot has no image block")

    e = await call_err(session, "browser_goto", {"url": blocked})
    check(e.get("code") == "PERMISSION_DENIED", f"browser_goto {blocked}: code {e}")
    check("blocked by the sandbox's egress policy" in e["error"] and blocked_host in e["error"]
          and allowed_host in e["error"], f"browser_goto {blocked} should name the policy: {e}")

    code = f"import requests\nprint(requests.get({allowed + 'hello'!r}, timeout=60).text.strip())"
    d, _ = await call(session, "code_run", {"language": "python", "code": code})
    check(d["stdout"] == f"hello from {allowed_host} over https\n", f"requests in the sandbox: {d}")

    d, _ = await call(session, "sandbox_destroy", {"sandbox_id": sb})
    check(d == {"success": True}, f"sandbox_destroy: {d}")


# --------------------------------------------------------------------------------------------
async def auto(args):
    """`mcp.Client` in its default mode probes `server/discover` first (protocol 2026-07-28) and
    falls back to initialize; the bridge must end up in a session whose sandbox persists."""
    from mcp import Client
    if args.stdio:
        server = StdioServerParameters(command=args.stdio, args=[], env=dict(os.environ))
    else:
        check(not args.token, "auto over HTTP runs without a token")
        server = args.url
    async with Client(server) as c:
        await c.call_tool("code_run", {"language": "shell", "code": "echo kept > /workspace/probe"})
        r = await c.call_tool("code_run", {"language": "shell", "code": "cat /workspace/probe"})
        d = payload(r)
        log(f"auto -> {d}")
        check(d["stdout"] == "kept\n", f"state between calls after the discover probe: {d}")
        r = await c.call_tool("sandbox_list", {})
        check(len(payload(r)["sandboxes"]) == 1, f"one sandbox for the session: {payload(r)}")


# --------------------------------------------------------------------------------------------
async def bench(session):
    """p50 of code_run `echo hi` as the client sees it (the sandbox is created by a warm-up call)."""
    await call(session, "code_run", {"language": "shell", "code": "echo warm"})
    times = []
    for _ in range(50):
        t = time.perf_counter()
        r = await session.call_tool("code_run", {"language": "shell", "code": "echo hi"})
        times.append((time.perf_counter() - t) * 1000)
        check(payload(r)["stdout"] == "hi\n", f"bench: {r}")
    times.sort()
    SUMMARY["code_run_p50_ms"] = round(times[len(times) // 2], 2)
    SUMMARY["code_run_p90_ms"] = round(times[int(len(times) * 0.9)], 2)


# --------------------------------------------------------------------------------------------
def raw(bridge):
    """JSON-RPC edge cases over raw stdio: a pre-initialize `server/discover` probe (newer SDKs
    send it first) gets an answer, unknown methods get -32601 promptly, and the session works."""
    p = subprocess.Popen([bridge], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def rpc(msg, want_id):
        p.stdin.write(json.dumps(msg) + "\n")
        p.stdin.flush()
        t = time.monotonic()
        while True:
            line = p.stdout.readline()
            check(line, f"bridge closed stdout while waiting for id {want_id}")
            check(time.monotonic() - t < 10, f"no answer to {msg['method']} within 10 s")
            m = json.loads(line)
            if m.get("id") == want_id:
                return m

    # The probe as newer SDKs send it (SEP-2575 _meta, protocol 2026-07-28). The bridge speaks
    # handshake-era versions only, so rmcp answers -32022 "Unsupported protocol version" with the
    # supported list (clients then fall back to initialize); -32601 would do as well. Either way
    # an answer at once, and the connection stays usable for initialize.
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {}}
    m = rpc({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}}, 1)
    log(f"server/discover before initialize -> {json.dumps(m)[:300]}")
    err = m.get("error", {})
    check(err.get("code") == -32601 or (err.get("code") == -32022 and "2025-11-25" in err.get("data", {}).get("supported", [])),
          f"server/discover: {m}")
    m = rpc({"jsonrpc": "2.0", "id": 99, "method": "server/discover", "params": {}}, 99)
    check("error" in m, f"malformed server/discover: {m}")
    m = rpc({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}, 2)
    check(m["result"]["serverInfo"]["name"] == "agent-runtime", f"initialize: {m}")
    check("tools" in m["result"]["capabilities"], f"capabilities: {m}")
    p.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
    for i, method in enumerate(["totally/unknown", "prompts/list", "resources/list", "completion/complete"], start=3):
        t = time.monotonic()
        m = rpc({"jsonrpc": "2.0", "id": i, "method": method, "params": {}}, i)
        log(f"{method} -> {m} ({int((time.monotonic() - t) * 1000)} ms)")
        check(m.get("error", {}).get("code") == -32601, f"{method}: expected -32601, got {m}")
    m = rpc({"jsonrpc": "2.0", "id": 20, "method": "tools/call", "params": {"name": "no_such_tool", "arguments": {}}}, 20)
    check("error" in m or m.get("result", {}).get("isError"), f"unknown tool: {m}")
    m = rpc({"jsonrpc": "2.0", "id": 21, "method": "logging/setLevel", "params": {"level": "warning"}}, 21)
    check("result" in m, f"logging/setLevel: {m}")
    m = rpc({"jsonrpc": "2.0", "id": 22, "method": "ping"}, 22)
    check(m.get("result") == {}, f"ping: {m}")
    p.stdin.close()
    check(p.wait(timeout=30) == 0, "bridge did not exit cleanly at EOF")


# --------------------------------------------------------------------------------------------
async def run_session(args, body):
    if args.stdio:
        params = StdioServerParameters(command=args.stdio, args=[], env=dict(os.environ))
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write, logging_callback=on_log) as s:
                await s.initialize()
                await body(s)
    else:
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        async with create_mcp_http_client(headers=headers) as http, \
                streamable_http_client(args.url, http_client=http) as (read, write):
            async with ClientSession(read, write, logging_callback=on_log) as s:
                init = await s.initialize()
                SUMMARY["protocol"] = init.protocol_version
                await body(s)


async def main_async(args):
    if args.scenario == "core":
        async def body(s):
            await core(s)
            await logging_flow(s)
        await run_session(args, body)
    elif args.scenario == "contexts":
        await run_session(args, contexts)
    elif args.scenario == "browser":
        await run_session(args, browser)
    elif args.scenario == "auto":
        await auto(args)
    elif args.scenario == "bench":
        await run_session(args, bench)
    elif args.scenario == "egress":
        await run_session(args, egress)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["core", "contexts", "browser", "raw", "auto", "bench", "egress"])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--stdio", metavar="BRIDGE")
    g.add_argument("--url")
    ap.add_argument("--token")
    args = ap.parse_args()
    import importlib.metadata
    SUMMARY["client"] = f"python mcp {importlib.metadata.version('mcp')}"
    SUMMARY["transport"] = "stdio" if args.stdio else "http"
    if args.scenario == "raw":
        check(args.stdio, "raw needs --stdio")
        raw(args.stdio)
    else:
        asyncio.run(main_async(args))
    SUMMARY["ok"] = args.scenario
    print(json.dumps(SUMMARY), flush=True)


if __name__ == "__main__":
    main()
