"""A scripted ACP agent, written with the official ACP Python SDK
(`agent-client-protocol`), for what fast-agent does not exercise: the
client's fs/* and terminal/* methods, cancellation, a flood of updates,
a malformed line. The first word of the prompt picks the script:

  read <path>              fs/read_text_file; says "read: <content>" or "read failed: <message>"
  write <path> <text...>   fs/write_text_file; says "wrote" or "write failed: <message>"
  run <cmd> [args...]      terminal/create, wait_for_exit, output, release; says the result as JSON
  ask <title>              session/request_permission for a tool titled <title>; says the option chosen
  hang                     waits for session/cancel, then ends the turn as cancelled
  deaf                     never ends its turn, session/cancel or not
  flood <n>                n agent_message_chunk updates of "x"
  malformed                writes a line that is not JSON, then says "after"
  jsonlater                says "not json" on its first turn and {"ok": true} after
  readskill                reads the first SKILL.md the prompt names
  mcpcall <server> <tool>  calls the tool straight on the MCP server session/new offered (no permission asked); says the answer
  chat <text>              asks its provider (the official openai SDK, OPENAI_BASE_URL and OPENAI_API_KEY
                           from its environment) to echo <text>; says the reply and the key it holds
  linger <path>            detaches a grandchild (double fork) holding a keep-alive connection to its relay;
                           once the agent is gone it sends one more request on it and writes what happened to <path>
  daemon <path>            starts a child in a session of its own that appends a line to <path> every 50 ms
The script is the prompt's last line (skills are named above it).
  exit                     exits with status 3 mid-turn
  anything else            says it back
"""
import asyncio
import urllib.error
import urllib.request
import json
import os
import sys

from acp import PROTOCOL_VERSION, InitializeResponse, NewSessionResponse, PromptResponse, RequestError, run_agent
from acp import update_agent_message_text, update_agent_thought_text
from acp.helpers import plan_entry, start_tool_call, update_plan
from acp.schema import AgentCapabilities, Implementation, PermissionOption, ToolCallUpdate


class Scripted:
    def __init__(self):
        self.conn = None
        self.cancelled = {}
        self.turns = {}

    def on_connect(self, conn):
        self.conn = conn

    async def initialize(self, protocol_version, client_capabilities=None, client_info=None, **kw):
        return InitializeResponse(protocol_version=PROTOCOL_VERSION, agent_capabilities=AgentCapabilities(load_session=False),
                                  agent_info=Implementation(name="scripted", title="Scripted", version="1"), auth_methods=[])

    async def new_session(self, cwd, mcp_servers=None, **kw):
        self.servers = {getattr(s, "name", ""): (getattr(s, "url", None), {h.name: h.value for h in (getattr(s, "headers", None) or [])})
                        for s in (mcp_servers or [])}
        return NewSessionResponse(session_id="s-%d" % os.getpid())

    async def authenticate(self, method_id, **kw):
        return None

    async def cancel(self, session_id, **kw):
        ev = self.cancelled.get(session_id)
        if ev:
            ev.set()

    async def say(self, sid, text):
        await self.conn.session_update(session_id=sid, update=update_agent_message_text(text))

    async def prompt(self, session_id, prompt, **kw):
        sid = session_id
        full = " ".join(getattr(b, "text", "") for b in prompt if getattr(b, "type", "") == "text").strip()
        text = full.split("\n")[-1].strip()
        words = text.split()
        cmd = words[0] if words else ""
        self.turns[sid] = self.turns.get(sid, 0) + 1
        if self.turns[sid] == 1:
            self.first = getattr(self, "first", {})
            self.first[sid] = cmd
        elif getattr(self, "first", {}).get(sid) == "jsonlater":
            cmd = "jsonlater"
        ev = self.cancelled[sid] = asyncio.Event()
        await self.conn.session_update(session_id=sid, update=update_agent_thought_text("thinking about " + cmd))
        if cmd == "read":
            await self.conn.session_update(session_id=sid, update=start_tool_call("t-read", "read " + words[1], kind="read", status="in_progress"))
            try:
                r = await self.conn.read_text_file(session_id=sid, path=words[1])
                await self.say(sid, "read: " + r.content)
            except RequestError as e:
                await self.say(sid, "read failed: %s" % e)
        elif cmd == "write":
            try:
                await self.conn.write_text_file(session_id=sid, path=words[1], content=" ".join(words[2:]))
                await self.say(sid, "wrote")
            except RequestError as e:
                await self.say(sid, "write failed: %s" % e)
        elif cmd == "run":
            try:
                t = await self.conn.create_terminal(session_id=sid, command=words[1], args=words[2:], output_byte_limit=4096)
                ex = await self.conn.wait_for_terminal_exit(session_id=sid, terminal_id=t.terminal_id)
                out = await self.conn.terminal_output(session_id=sid, terminal_id=t.terminal_id)
                await self.conn.release_terminal(session_id=sid, terminal_id=t.terminal_id)
                await self.say(sid, json.dumps({"exitCode": ex.exit_code, "signal": ex.signal, "output": out.output}))
            except RequestError as e:
                await self.say(sid, "run failed: %s" % e)
        elif cmd == "ask":
            r = await self.conn.request_permission(
                session_id=sid,
                tool_call=ToolCallUpdate(tool_call_id="pending", title=words[1], kind="execute", status="pending"),
                options=[PermissionOption(option_id="yes", name="Allow", kind="allow_once"),
                         PermissionOption(option_id="always", name="Always", kind="allow_always"),
                         PermissionOption(option_id="no", name="Reject", kind="reject_once")])
            await self.say(sid, "chosen: " + (getattr(r.outcome, "option_id", None) or r.outcome.outcome))
        elif cmd == "hang":
            await self.say(sid, "hanging")
            await ev.wait()
            return PromptResponse(stop_reason="cancelled")
        elif cmd == "deaf":
            await self.say(sid, "not listening")
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    pass
        elif cmd == "flood":
            await self.conn.session_update(session_id=sid, update=update_plan([plan_entry("flood", priority="high", status="in_progress")]))
            for _ in range(int(words[1])):
                await self.say(sid, "x")
        elif cmd == "malformed":
            os.write(1, b"this line is not JSON {oops\n")
            await self.say(sid, "after")
        elif cmd == "readskill":
            path = full.split("at ", 1)[1].split(")", 1)[0]
            r = await self.conn.read_text_file(session_id=sid, path=path)
            await self.say(sid, r.content)
        elif cmd == "mcpcall":
            url, given = self.servers.get(words[1])
            def post(message, auth=True):
                headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
                if auth:
                    headers.update(given)
                req = urllib.request.Request(url, data=json.dumps(message).encode(), method="POST", headers=headers)
                with urllib.request.urlopen(req, timeout=20) as r:
                    return json.loads(r.read() or b"null")
            try:
                post({"jsonrpc": "2.0", "id": 0, "method": "ping"}, auth=False)
                unauthenticated = "answered"
            except urllib.error.HTTPError as e:
                unauthenticated = e.code
            try:
                post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "s", "version": "1"}}})
                listed = post({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}})
                called = post({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": words[2], "arguments": {"timezone": "UTC", "source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}}})
                names = sorted(t["name"] for t in listed["result"]["tools"])
                await self.say(sid, json.dumps({"listed": names, "called": called, "unauthenticated": unauthenticated}))
            except Exception as e:
                await self.say(sid, "mcpcall failed: %s" % e)
        elif cmd == "chat":
            try:
                import openai
                client = openai.AsyncOpenAI()
                r = await client.chat.completions.create(model="stand-in-model", messages=[{"role": "user", "content": "echo: " + " ".join(words[1:])}])
                again = await client.chat.completions.create(model="stand-in-model", messages=[{"role": "user", "content": "echo: again"}])
                # The relay without the step's token: what another process on the worker's loopback would try.
                bare = urllib.request.Request(os.environ["OPENAI_BASE_URL"] + "/chat/completions", method="POST",
                                              data=json.dumps({"model": "stand-in-model", "messages": [{"role": "user", "content": "echo: sneaked"}]}).encode(),
                                              headers={"Content-Type": "application/json"})
                try:
                    urllib.request.urlopen(bare, timeout=20)
                    unauthenticated = "answered"
                except urllib.error.HTTPError as e:
                    unauthenticated = e.code
                await self.say(sid, json.dumps({"reply": r.choices[0].message.content, "again": again.choices[0].message.content,
                                                "unauthenticated": unauthenticated,
                                                "key": os.environ.get("OPENAI_API_KEY"),
                                                "base": os.environ.get("OPENAI_BASE_URL")}))
            except Exception as e:
                await self.say(sid, "chat failed: %s" % e)
        elif cmd == "linger":
            import http.client
            base = os.environ["OPENAI_BASE_URL"]
            host_port, prefix = base[len("http://"):].split("/", 1)
            host, port = host_port.split(":")
            key = os.environ["OPENAI_API_KEY"]
            def ask(conn):
                conn.request("GET", "/" + prefix + "/models", headers={"Authorization": "Bearer " + key})
                r = conn.getresponse()
                r.read()
                return r.status
            # The grandchild says when its first request is answered, and learns
            # of the agent's end (which ends the step) from the EOF on a pipe only
            # the agent holds open: no guessing at how long either takes.
            ready_r, ready_w = os.pipe()
            life_r, life_w = os.pipe()
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.close(ready_r)
                    os.close(life_w)
                    import time
                    conn = http.client.HTTPConnection(host, int(port), timeout=10)
                    try:
                        first = "%d" % ask(conn)
                    except Exception as e:
                        first = "failed: %s" % e
                    os.write(ready_w, b"x")
                    os.close(ready_w)
                    os.read(life_r, 1)
                    # The relay closes as the step ends, right after the agent is killed.
                    time.sleep(1)
                    try:
                        outcome = "answered %d" % ask(conn)
                    except Exception as e:
                        outcome = "refused: %s" % type(e).__name__
                    with open(words[1], "w") as f:
                        f.write("first %s, after the step: %s\n" % (first, outcome))
                os._exit(0)
            os.close(ready_w)
            os.close(life_r)
            await asyncio.get_running_loop().run_in_executor(None, os.read, ready_r, 1)
            await self.say(sid, "lingering")
        elif cmd == "daemon":
            if os.fork() == 0:
                os.setsid()
                while True:
                    with open(words[1], "a") as f:
                        f.write("tick\n")
                    import time
                    time.sleep(0.05)
            await asyncio.sleep(0.3)
            await self.say(sid, "started")
        elif cmd == "jsonlater":
            await self.say(sid, "not json" if self.turns[sid] == 1 else '{"ok": true}')
        elif cmd == "exit":
            sys.stderr.write("scripted agent: exiting as asked\n")
            sys.stderr.flush()
            os._exit(3)
        else:
            await self.say(sid, text)
        return PromptResponse(stop_reason="end_turn")


if __name__ == "__main__":
    asyncio.run(run_agent(Scripted()))
