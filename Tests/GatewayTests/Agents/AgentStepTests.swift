import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// `agent` steps against real ACP agents in the real sandbox: a scripted agent
/// written with the official ACP Python SDK (the client's fs and terminal
/// methods, cancellation, floods, garbage), and fast-agent (sessions, MCP
/// tools with a permission request). Both are installed from PyPI by `make peers`.
@Suite("Agent steps", .serialized, .enabled(if: Peers.available, "make peers installs the agents"))
final class AgentStepTests {
    let gw: TestGateway
    let dir: String

    static func workflows(dir: String) -> [String: String] {
        func agent(_ id: String, _ prompt: String, extra: String = "", agentId: String = "scripted") -> String {
            """
            id: \(id)
            steps:
              - id: ask
                agent:
                  agent: \(agentId)
                  prompt: "\(prompt)"
            \(extra.split(separator: "\n").map { "      " + $0 }.joined(separator: "\n"))
            """
        }
        return [
            "read-ok.workflow.yaml": agent("read-ok", "read \(dir)/allowed/notes.txt"),
            "read-denied.workflow.yaml": agent("read-denied", "read \(dir)/private/key.txt"),
            "write-ok.workflow.yaml": agent("write-ok", "write \(dir)/out/result.txt written by the agent"),
            "write-denied.workflow.yaml": agent("write-denied", "write \(dir)/allowed/notes.txt overwritten"),
            "run-ok.workflow.yaml": agent("run-ok", "run echo hi from a terminal"),
            "run-denied.workflow.yaml": agent("run-denied", "run wc -c /etc/hostname"),
            "ask.workflow.yaml": agent("ask", "ask ${{ input.tool }}"),
            "ask-deny.workflow.yaml": agent("ask-deny", "ask time/get_current_time", extra: "onPermission: deny"),
            "ask-human.workflow.yaml": agent("ask-human", "ask ${{ input.tool }}", extra: "onPermission: ask"),
            "hang.workflow.yaml": """
                id: hang
                steps:
                  - id: ask
                    timeout: 6s
                    agent: { agent: scripted, prompt: hang }
                """,
            "deaf.workflow.yaml": """
                id: deaf
                steps:
                  - id: ask
                    timeout: 6s
                    agent: { agent: scripted, prompt: deaf }
                """,
            "flood.workflow.yaml": agent("flood", "flood 5000"),
            "malformed.workflow.yaml": agent("malformed", "malformed"),
            "dies.workflow.yaml": agent("dies", "exit"),
            "turns.workflow.yaml": agent("turns", "jsonlater", extra: "maxTurns: 2\noutput: { type: object, required: [ok] }"),
            "one-turn.workflow.yaml": agent("one-turn", "jsonlater", extra: "maxTurns: 1\noutput: { type: object, required: [ok] }"),
            "skill.workflow.yaml": agent("skill", "readskill", extra: "skills: [release-notes]"),
            "skill-tamper.workflow.yaml": """
                id: skill-tamper
                steps:
                  - id: tamper
                    exec:
                      argv: [sh, -c, 'for f in "$PWD.skills/release-notes/SKILL.md" "$PWD.skills"; do mv "$f" "$f.x" 2>/dev/null && echo moved; echo hacked > "$f" 2>/dev/null && echo wrote; done; echo done']
                  - id: ask
                    agent: { agent: scripted, prompt: readskill, skills: [release-notes] }
                """,
            "daemon.workflow.yaml": agent("daemon", "daemon \(dir)/out/ticks"),
            "ask-then-approve.workflow.yaml": """
                id: ask-then-approve
                steps:
                  - id: ask
                    agent: { agent: scripted, prompt: "ask time/get_current_time", onPermission: ask }
                  - id: gate
                    approval: { message: "go on?" }
                """,
            "not-allowed.workflow.yaml": """
                id: not-allowed
                steps:
                  - id: ask
                    permissions: { allowedAgents: [fast] }
                    agent: { agent: scripted, prompt: hello }
                """,
            "unknown.workflow.yaml": agent("unknown", "hello", agentId: "nobody"),
            "fast.workflow.yaml": """
                id: fast
                steps:
                  - id: hello
                    agent: { agent: fast, prompt: "hello from skelm" }
                  - id: tool
                    agent:
                      agent: fast
                      mcpServers: [time]
                      prompt: '***CALL_TOOL time__get_current_time {"timezone": "Europe/Berlin"}'
                """,
            "fast-hidden.workflow.yaml": """
                id: fast-hidden
                steps:
                  - id: refused
                    agent:
                      agent: fast
                      mcpServers: [time]
                      prompt: '***CALL_TOOL time__convert_time {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}'
                """,
            "gate.workflow.yaml": """
                id: gate
                steps:
                  - id: allowed
                    agent: { agent: scripted, mcpServers: [time], prompt: "mcpcall time get_current_time" }
                  - id: direct
                    agent: { agent: scripted, mcpServers: [time], prompt: "mcpcall time convert_time" }
                """,
        ]
    }

    init() async throws {
        dir = "/tmp/skelm-agents-\(UUID().uuidString.prefix(8).lowercased())"
        for sub in ["allowed", "private", "out", "skills/release-notes"] {
            try FileManager.default.createDirectory(atPath: "\(dir)/\(sub)", withIntermediateDirectories: true)
        }
        chmod(dir, 0o755)
        chmod(dir + "/allowed", 0o755)
        chmod(dir + "/out", 0o777)
        try "hello from the allowed dir\n".write(toFile: dir + "/allowed/notes.txt", atomically: true, encoding: .utf8)
        chmod(dir + "/allowed/notes.txt", 0o644)
        try "the key\n".write(toFile: dir + "/private/key.txt", atomically: true, encoding: .utf8)
        try """
            ---
            name: release-notes
            description: How to write release notes
            ---
            Write them short.
            """.write(toFile: dir + "/skills/release-notes/SKILL.md", atomically: true, encoding: .utf8)
        let agent = try Peers.scriptedAgent(in: dir + "/agents")
        gw = try TestGateway(workflows: Self.workflows(dir: dir), config: """
            server: { host: 127.0.0.1, port: 0, maxConcurrentRuns: 4 }
            workers: { minSpare: 1, max: 6, uidBase: UIDBASE, limits: { timeoutSeconds: 60, addressSpaceMB: 4096, workerAddressSpaceMB: 8192 } }
            defaults:
              permissions:
                allowedExecutables: [echo, sh]
                fsRead: [\(dir)/allowed]
                fsWrite: [\(dir)/out]
                allowedAgents: [scripted, fast]
                allowedMcpServers: [time]
                allowedTools: [time/get_current_time]
                allowedSkills: [release-notes]
            agents:
              - id: scripted
                command: \(agent)
              - id: fast
                command: \(Peers.bin)/fast-agent
                args: [--no-update-check, --home, .fast-agent, acp, --model, passthrough]
            mcpServers:
              - id: time
                command: \(Peers.bin)/mcp-server-time
                args: [--local-timezone, UTC]
            skills: { dirs: [\(dir)/skills] }
            """)
        try await gw.start()
    }

    deinit {
        gw.cleanupLater()
        try? FileManager.default.removeItem(atPath: dir)
    }

    func events(_ run: JSONValue) async throws -> [JSONValue] {
        let id = try #require(run["id"]?.stringValue)
        return try await gw.get("/runs/\(id)/events?limit=10000", headers: [("Accept", "application/json")]).json?["events"].list ?? []
    }

    func audit(_ action: String, run: JSONValue) async throws -> [JSONValue] {
        let id = run["id"]?.stringValue ?? ""
        return (try await gw.get("/audit?action=\(action)&limit=1000").json?["entries"].list ?? []).filter { $0["runId"]?.stringValue == id }
    }

    @Test("the agent reads a file its policy allows, through the client; its updates are run events and the read is audited")
    func readAllowed() async throws {
        let done = try await gw.run("read-ok")
        #expect(done["status"] == "succeeded", "\(done)")
        #expect(done["output"] == "read: hello from the allowed dir", "\(done)")
        let all = try await events(done)
        #expect(!Peers.events(all, "agent.thought").isEmpty)
        #expect(Peers.events(all, "agent.tool_call").contains { $0["data"]?["status"] == "in_progress" })
        #expect(Peers.events(all, "agent.request").contains { $0["data"]?["method"] == "fs/read_text_file" && $0["data"]?["outcome"] == "allowed" })
        let audited = try await audit("agent.request", run: done)
        #expect(audited.contains { $0["details"]?["target"]?.stringValue == dir + "/allowed/notes.txt" && $0["details"]?["outcome"] == "allowed" })
    }

    @Test("a read outside fsRead is refused to the agent, which goes on; the refusal is an event and audited with its dimension")
    func readDenied() async throws {
        let done = try await gw.run("read-denied")
        #expect(done["status"] == "succeeded", "\(done)")
        let said = try #require(done["output"]?.stringValue)
        #expect(said.hasPrefix("read failed") && said.contains("PermissionDenied: fsRead does not allow \(dir)/private/key.txt"), "\(said)")
        #expect(!said.contains("the key"))
        let denied = Peers.events(try await events(done), "permission.denied")
        #expect(denied.contains { $0["data"]?["dimension"] == "fsRead" && $0["data"]?["method"] == "fs/read_text_file" })
        let audited = try await audit("permission.denied", run: done)
        #expect(audited.contains { $0["details"]?["dimension"] == "fsRead" && $0["details"]?["value"]?.stringValue == dir + "/private/key.txt" })
    }

    @Test("writes land inside fsWrite only; a write into a read-only grant is refused")
    func writes() async throws {
        let ok = try await gw.run("write-ok")
        #expect(ok["output"] == "wrote", "\(ok)")
        #expect(try String(contentsOfFile: dir + "/out/result.txt", encoding: .utf8) == "written by the agent")
        let no = try await gw.run("write-denied")
        #expect(no["output"]?.stringValue?.contains("PermissionDenied: fsWrite") == true, "\(no)")
        #expect(try String(contentsOfFile: dir + "/allowed/notes.txt", encoding: .utf8) == "hello from the allowed dir\n")
    }

    @Test("a terminal runs an allowed executable and reports its output and exit; another executable is refused")
    func terminals() async throws {
        let ok = try await gw.run("run-ok")
        let result = try #require(JSONValue.parse(ok["output"]?.stringValue ?? ""), "\(ok)")
        #expect(result["exitCode"] == 0)
        #expect(result["output"] == "hi from a terminal\n")
        let no = try await gw.run("run-denied")
        #expect(no["output"]?.stringValue?.contains("PermissionDenied: allowedExecutables does not allow /usr/bin/wc") == true, "\(no)")
        let audited = try await audit("permission.denied", run: no)
        #expect(audited.contains { $0["details"]?["dimension"] == "allowedExecutables" && $0["details"]?["method"] == "terminal/create" })
    }

    @Test("session/request_permission is answered from allowedTools, never with allow_always; onPermission: deny rejects all")
    func permissions() async throws {
        let allowed = try await gw.run("ask", ["tool": "time/get_current_time"])
        #expect(allowed["output"] == "chosen: yes", "\(allowed)")
        let refused = try await gw.run("ask", ["tool": "time/convert_time"])
        #expect(refused["output"] == "chosen: no", "\(refused)")
        #expect(try await audit("permission.denied", run: refused).contains {
            $0["details"]?["dimension"] == "allowedTools" && $0["details"]?["value"] == "time/convert_time"
        })
        let denyAll = try await gw.run("ask-deny")
        #expect(denyAll["output"] == "chosen: no", "\(denyAll)")
    }

    @Test("onPermission: ask turns a permission request into an approval decided over HTTP; what the policy rules out is never asked")
    func askedOfAPerson() async throws {
        for (approve, said) in [(true, "chosen: yes"), (false, "chosen: no")] {
            let started = try await gw.run("ask-human", ["tool": "time/get_current_time"], sync: false)
            let id = try #require(started["id"]?.stringValue)
            var approval: JSONValue?
            for _ in 0..<500 where approval == nil {
                approval = try await gw.get("/approvals?run=\(id)").json?["approvals"].list.first
                if approval == nil { try await Task.sleep(for: .milliseconds(20)) }
            }
            let pending = try #require(approval)
            #expect(pending["kind"] == "permission" && pending["step"] == "ask", "\(pending)")
            #expect(pending["message"]?.stringValue?.contains("time/get_current_time") == true)
            let decided = try await gw.post("/approvals/\(pending["id"]!.stringValue!)/\(approve ? "approve" : "deny")", ["reason": "checked"])
            #expect(decided.status == 200, "\(decided.errorMessage)")
            let done = try await gw.waitForStatus(id, ["succeeded", "failed"])
            #expect(done["output"]?.stringValue == said, "\(done)")
            let requested = try await audit("approval.requested", run: done)
            #expect(requested.first?["details"]?["kind"] == "permission")
        }
        let outside = try await gw.run("ask-human", ["tool": "time/convert_time"])
        #expect(outside["output"] == "chosen: no", "\(outside)")
        #expect(try await gw.get("/approvals?run=\(outside["id"]!.stringValue!)&status=all").json?["approvals"].list.isEmpty == true)
    }

    @Test("a skill cannot be changed by an earlier step of the job, nor by the agent; what the agent reads is the original")
    func skillTamper() async throws {
        let done = try await gw.run("skill-tamper")
        #expect(done["status"] == "succeeded", "\(done)")
        let steps = done["steps"].list
        #expect(steps.first { $0["path"] == "tamper" }?["output"] == "done", "\(steps)")
        #expect(steps.first { $0["path"] == "ask" }?["output"]?.stringValue?.contains("Write them short.") == true, "\(steps)")
    }

    @Test("a process the agent started in a session of its own dies with the step")
    func detached() async throws {
        let done = try await gw.run("daemon")
        #expect(done["output"] == "started", "\(done)")
        let ticks = dir + "/out/ticks"
        let size = (try? FileManager.default.attributesOfItem(atPath: ticks)[.size] as? Int) ?? nil
        #expect((size ?? 0) > 0, "the child never ran")
        try await Task.sleep(for: .milliseconds(600))
        let later = (try? FileManager.default.attributesOfItem(atPath: ticks)[.size] as? Int) ?? nil
        #expect(later == size, "the child outlived its step: \(String(describing: size)) -> \(String(describing: later))")
    }

    @Test("a denied permission approval does not hold the run at a later approval step")
    func deniedPermissionThenApproval() async throws {
        let started = try await gw.run("ask-then-approve", sync: false)
        let id = try #require(started["id"]?.stringValue)
        var asked: JSONValue?
        for _ in 0..<500 where asked == nil {
            asked = try await gw.get("/approvals?run=\(id)").json?["approvals"].list.first { $0["kind"] == "permission" }
            if asked == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        let permission = try #require(asked)
        #expect(try await gw.post("/approvals/\(permission["id"]!.stringValue!)/deny", [:]).status == 200)
        var gate: JSONValue?
        for _ in 0..<500 where gate == nil {
            gate = try await gw.get("/approvals?run=\(id)").json?["approvals"].list.first { $0["kind"] == "step" }
            if gate == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        let step = try #require(gate)
        #expect(try await gw.post("/approvals/\(step["id"]!.stringValue!)/approve", [:]).status == 200)
        let done = try await gw.waitForStatus(id, ["succeeded", "failed"])
        #expect(done["status"] == "succeeded", "\(done)")
    }

    @Test("an agent that hangs is asked to cancel when the step's time is up, and the step fails as a timeout")
    func hang() async throws {
        let done = try await gw.run("hang")
        #expect(done["status"] == "failed")
        #expect(done["error"]?["code"] == "Timeout", "\(done)")
        #expect(done["error"]?["message"]?.stringValue?.contains("asked to cancel") == true, "\(done)")
    }

    @Test("an agent that ignores the request to cancel is stopped 2 s later, and the step says it never ended its turn")
    func deaf() async throws {
        let done = try await gw.run("deaf")
        #expect(done["error"]?["code"] == "Timeout", "\(done)")
        #expect(done["error"]?["message"]?.stringValue?.hasSuffix("during its turn; the agent was asked to cancel and did not end its turn") == true,
                "\(done)")
        // The step's 6 s (room for a loaded host to start the agent), then
        // the 2 s the agent had to end its turn.
        #expect((done["durationMs"]?.int ?? 0) >= 7_900, "\(done)")
    }

    @Test("a flood of 5,000 updates arrives whole, as a few joined events; a line that is not JSON-RPC is skipped")
    func floodAndGarbage() async throws {
        let flood = try await gw.run("flood")
        #expect(flood["status"] == "succeeded", "\(flood)")
        #expect(flood["output"]?.stringValue == String(repeating: "x", count: 5000))
        let messages = Peers.events(try await events(flood), "agent.message")
        #expect(messages.map { $0["data"]?["text"]?.stringValue ?? "" }.joined().count == 5000)
        #expect(messages.count < 100, "\(messages.count) events for 5000 chunks")
        let garbage = try await gw.run("malformed")
        #expect(garbage["status"] == "succeeded", "\(garbage)")
        #expect(garbage["output"] == "after")
    }

    @Test("an agent that exits mid-turn fails the step with its exit status and what it wrote to stderr")
    func dies() async throws {
        let done = try await gw.run("dies")
        #expect(done["error"]?["code"] == "AgentFailed", "\(done)")
        let message = done["error"]?["message"]?.stringValue ?? ""
        #expect(message.contains("exited with status 3") && message.contains("exiting as asked"), "\(message)")
    }

    @Test("with output, an answer that does not fit the schema is sent back until it does, within maxTurns")
    func turns() async throws {
        let done = try await gw.run("turns")
        #expect(done["status"] == "succeeded", "\(done)")
        #expect(done["output"] == ["ok": true])
        let finished = Peers.events(try await events(done), "step.finished")
        #expect(finished.first?["data"]?["turns"] == 2)
        let once = try await gw.run("one-turn")
        #expect(once["error"]?["code"] == "OutputInvalid", "\(once)")
    }

    @Test("a skill is mounted read-only in the workspace and named in the prompt")
    func skills() async throws {
        let done = try await gw.run("skill")
        #expect(done["status"] == "succeeded", "\(done)")
        #expect(done["output"]?.stringValue?.contains("Write them short.") == true, "\(done)")
        let listed = try await gw.get("/v1/registry/skills").json
        #expect(listed?["skills"].list.first?["name"] == "release-notes")
        let one = try await gw.get("/v1/registry/skills/release-notes").json
        #expect(one?["text"]?.stringValue?.contains("Write them short.") == true)
        #expect(try await gw.get("/v1/registry/skills/nope").status == 404)
    }

    @Test("an agent the step may not use is refused before it starts; one config does not define is refused at submit")
    func refusals() async throws {
        let done = try await gw.run("not-allowed")
        #expect(done["error"]?["code"] == "PermissionDenied", "\(done)")
        #expect(done["error"]?["message"]?.stringValue?.contains("allowedAgents does not allow scripted") == true)
        let r = try await gw.post("/runs", ["workflow": "unknown", "mode": "sync"])
        #expect(r.status == 400)
        #expect(r.errorMessage.contains("agent 'nobody', which config does not define"), "\(r.errorMessage)")
    }

    @Test("fast-agent: a prompt is answered; an MCP tool allowed by allowedTools is called through the gate after its permission request; a tool outside them is not even listed")
    func fastAgent() async throws {
        let done = try await gw.run("fast")
        #expect(done["status"] == "succeeded", "\(done)")
        let steps = done["steps"].list
        #expect(steps.first { $0["path"] == "hello" }?["output"] == "hello from skelm")
        let tool = try #require(steps.first { $0["path"] == "tool" }?["output"]?.stringValue)
        #expect(tool.contains("Europe/Berlin"), "\(tool)")
        let all = try await events(done)
        #expect(Peers.events(all, "agent.tool_call").contains { $0["step"] == "tool" && $0["data"]?["status"] == "completed" })
        #expect(Peers.events(all, "mcp.call").contains { $0["step"] == "tool" && $0["data"]?["outcome"] == "ok" })
        let requests = try await audit("agent.request", run: done)
        #expect(requests.contains { $0["details"]?["target"] == "time/get_current_time" && $0["details"]?["outcome"] == "allowed" })
        let hidden = try await gw.run("fast-hidden")
        #expect(hidden["error"]?["code"] == "AgentFailed", "\(hidden)")
        #expect(Peers.events(try await events(hidden), "mcp.call").isEmpty)
    }

    @Test("the gate holds an agent that calls a tool without asking: only allowed tools are listed, another is refused and audited")
    func gate() async throws {
        let done = try await gw.run("gate")
        #expect(done["status"] == "succeeded", "\(done)")
        let steps = done["steps"].list
        let allowed = try #require(JSONValue.parse(steps.first { $0["path"] == "allowed" }?["output"]?.stringValue ?? ""), "\(steps)")
        #expect(allowed["listed"] == ["get_current_time"])
        #expect(allowed["called"]?["result"]?["isError"] == false, "\(allowed)")
        #expect(allowed["unauthenticated"] == 401, "the gate answered a request without its token: \(allowed)")
        let direct = try #require(JSONValue.parse(steps.first { $0["path"] == "direct" }?["output"]?.stringValue ?? ""), "\(steps)")
        #expect(direct["called"]?["error"]?["message"]?.stringValue?.contains("allowedTools does not allow time/convert_time") == true, "\(direct)")
        let denied = try await audit("permission.denied", run: done)
        #expect(denied.contains { $0["details"]?["value"] == "time/convert_time" && $0["details"]?["method"] == "tools/call" })
        let calls = try await audit("mcp.call", run: done)
        #expect(calls.contains { $0["details"]?["tool"] == "get_current_time" && $0["details"]?["outcome"] == "ok" })
        #expect(calls.contains { $0["details"]?["tool"] == "convert_time" && $0["details"]?["outcome"] == "denied" })
    }

    @Test("GET /v1/registry/agents and mcp-servers show what config registers, env by name only; the time server's tools are listed from a sandboxed worker")
    func registry() async throws {
        let agents = try await gw.get("/v1/registry/agents").json?["agents"].list ?? []
        #expect(agents.map { $0["id"] } == ["scripted", "fast"])
        #expect(agents.first?["executables"].list.count == 2)
        #expect(try await gw.get("/v1/registry/agents/nobody").status == 404)
        let tools = try await gw.get("/v1/registry/mcp-servers/time/tools").json
        let names = Set(tools?["tools"].list.compactMap { $0["name"]?.stringValue } ?? [])
        #expect(names == ["get_current_time", "convert_time"], "\(String(describing: tools))")
        #expect(tools?["serverInfo"]?["serverInfo"]?["name"] == "mcp-time")

        let list = try await gw.cli(["agents", "list"])
        #expect(list.status == 0 && list.stdout.contains("scripted") && list.stdout.contains("fast-agent"), "\(list)")
        let listed = try await gw.cli(["mcp", "tools", "time"])
        #expect(listed.status == 0 && listed.stdout.contains("convert_time"), "\(listed)")
        let skill = try await gw.cli(["skills", "show", "release-notes"])
        #expect(skill.status == 0 && skill.stdout.contains("Write them short."), "\(skill)")
        let missing = try await gw.cli(["mcp", "tools", "nope"])
        #expect(missing.status != 0 && missing.stderr.contains("no MCP server nope"), "\(missing)")
    }
}
