import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// Resident agents: fast-agent in a supervised worker of its own, its ACP
/// sessions kept by key across steps, a SIGKILL and a gateway restart.
@Suite("Resident agents", .serialized, .enabled(if: Peers.available, "make peers installs the agents"))
final class ResidentAgentTests {
    let gw: TestGateway
    let dir: String

    init() async throws {
        dir = "/tmp/skelm-resident-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let agent = try Peers.scriptedAgent(in: dir + "/agents")
        gw = try TestGateway(workflows: [
            "chat.workflow.yaml": """
                id: chat
                steps:
                  - id: say
                    timeout: 60s
                    agent: { agent: fast, sessionKey: "${{ input.key }}", prompt: "${{ input.text }}" }
                """,
            "echo.workflow.yaml": """
                id: echo
                steps:
                  - id: say
                    agent: { agent: scripted, prompt: "${{ input.text }}" }
                """,
            "stuck.workflow.yaml": """
                id: stuck
                steps:
                  - id: say
                    timeout: 3s
                    agent: { agent: scripted, prompt: hang }
                """,
            "peek.workflow.yaml": """
                id: peek
                steps:
                  - id: say
                    permissions: { fsRead: [] }
                    agent: { agent: scripted, prompt: "read /etc/hostname" }
                """,
        ], config: """
            server: { host: 127.0.0.1, port: 0 }
            workers: { minSpare: 1, max: 6, uidBase: UIDBASE, limits: { timeoutSeconds: 60, addressSpaceMB: 4096, workerAddressSpaceMB: 8192 } }
            defaults:
              permissions:
                allowedExecutables: [echo]
                fsRead: [/etc/hostname]
                allowedAgents: [fast, scripted]
            agents:
              - id: fast
                command: \(Peers.bin)/fast-agent
                args: [--no-update-check, --home, fast-home, acp, --model, passthrough]
                lifecycle: resident
              - id: scripted
                command: \(agent)
                lifecycle: resident
            """)
        try await gw.start()
    }

    deinit {
        gw.cleanupLater()
        try? FileManager.default.removeItem(atPath: dir)
    }

    func waitForState(_ id: String, _ state: String, restartsAtLeast: Int = 0) async throws -> JSONValue {
        try await gw.waitForResident("/v1/agents/\(id)", state, restartsAtLeast: restartsAtLeast)
    }

    @Test("a resident agent answers steps from its own worker; its events are the run's; the step's policy holds its requests")
    func turns() async throws {
        _ = try await waitForState("scripted", "running")
        let done = try await gw.run("echo", ["text": "hello resident"])
        #expect(done["status"] == "succeeded", "\(done)")
        #expect(done["output"] == "hello resident")
        let id = try #require(done["id"]?.stringValue)
        let events = try await gw.get("/runs/\(id)/events?limit=1000", headers: [("Accept", "application/json")]).json?["events"].list ?? []
        #expect(events.contains { $0["type"] == "agent.message" && $0["step"] == "say" })
        let peek = try await gw.run("peek")
        #expect(peek["output"]?.stringValue?.contains("PermissionDenied: fsRead") == true, "\(peek)")
        let audited = (try await gw.get("/audit?action=permission.denied").json?["entries"].list ?? []).filter { $0["runId"]?.stringValue == peek["id"]?.stringValue }
        #expect(audited.contains { $0["details"]?["dimension"] == "fsRead" })
    }

    @Test("a resident agent's turn that hangs ends at the step's timeout, and the agent takes the next turn")
    func stuck() async throws {
        _ = try await waitForState("scripted", "running")
        let done = try await gw.run("stuck")
        #expect(done["error"]?["code"] == "Timeout", "\(done)")
        let next = try await gw.run("echo", ["text": "still here"])
        #expect(next["output"] == "still here", "\(next)")
    }

    @Test("a resident agent killed with SIGKILL is restarted, counted, and answers again")
    func killed() async throws {
        let before = try await waitForState("scripted", "running")
        let pid = try #require(before["pid"].flatMap { if case let .number(n) = $0 { Int32(n) } else { nil } })
        kill(pid, SIGKILL)
        let after = try await waitForState("scripted", "running", restartsAtLeast: 1)
        #expect(after["lastExit"]?.stringValue?.contains("SIGKILL") == true, "\(after)")
        #expect(after["pid"] != before["pid"])
        let done = try await gw.run("echo", ["text": "back again"])
        #expect(done["output"] == "back again", "\(done)")
        let exited = try await gw.get("/audit?action=agent.exited").json?["entries"].list ?? []
        #expect(exited.contains { $0["details"]?["agent"] == "scripted" })
    }

    @Test("steps with one sessionKey continue one ACP session, also after the gateway restarts (session/load)")
    func sessions() async throws {
        _ = try await waitForState("fast", "running")
        let first = try await gw.run("chat", ["key": "ticket-7", "text": "first words"])
        #expect(first["output"] == "first words", "\(first)")
        let second = try await gw.run("chat", ["key": "ticket-7", "text": "second words"])
        #expect(second["output"] == "second words", "\(second)")
        let sessions = try await gw.get("/sessions?agent=fast").json?["sessions"].list ?? []
        let session = try #require(sessions.first { $0["key"] == "chat/ticket-7" })
        #expect(session["turns"] == 2 && session["state"] == "open", "\(session)")
        let acp = try #require(session["acpSessionId"]?.stringValue)

        _ = await gw.stop()
        try await gw.start()
        _ = try await waitForState("fast", "running")
        let third = try await gw.run("chat", ["key": "ticket-7", "text": "after the restart"])
        #expect(third["status"] == "succeeded", "\(third)")
        let again = try #require(try await gw.get("/sessions/\(session["id"]!.stringValue!)").json)
        #expect(again["turns"] == 3 && again["acpSessionId"]?.stringValue == acp, "\(again)")
        #expect((try await gw.get("/audit?action=acp.session.loaded").json?["entries"].list ?? []).contains { $0["details"]?["acpSession"]?.stringValue == acp })
        // The agent's own record of the conversation holds all three turns, in one session.
        let history = try String(contentsOfFile: "\(gw.stateDir)/workspaces/.agents/fast/fast-home/sessions/\(acp)/history_agent.json", encoding: .utf8)
        for words in ["first words", "second words", "after the restart"] { #expect(history.contains(words), "\(words)") }

        // Closed, the key starts afresh.
        #expect(try await gw.client.send(.DELETE, "/sessions/\(session["id"]!.stringValue!)").status == 200)
        _ = try await gw.run("chat", ["key": "ticket-7", "text": "fresh"])
        let now = try await gw.get("/sessions?agent=fast&state=open").json?["sessions"].list ?? []
        #expect(now.first { $0["key"] == "chat/ticket-7" }?["acpSessionId"]?.stringValue != acp)
        let status = try await gw.cli(["agents", "status", "fast"])
        #expect(status.status == 0 && status.stdout.contains("running"), "\(status)")
        let listed = try await gw.cli(["sessions", "list", "--agent", "fast"])
        #expect(listed.status == 0 && listed.stdout.contains("ticket-7") && listed.stdout.contains("closed"), "\(listed)")
        try await Task.sleep(for: .milliseconds(1100))
        let pruned = try await gw.cli(["sessions", "prune", "--older-than", "1s"])
        #expect(pruned.status == 0 && pruned.stdout.contains("closed 1 session"), "\(pruned)")
        #expect((try await gw.get("/sessions?state=open").json?["sessions"].list ?? []).isEmpty)
    }
}
