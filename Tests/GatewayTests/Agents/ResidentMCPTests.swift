import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// Resident MCP servers: mcp-server-time and mcp-server-git from PyPI, each in
/// a supervised worker of its own, reached by `mcp` steps and by an ephemeral
/// agent's gate through the control plane; a SIGKILL and a ceiling.
@Suite("Resident MCP servers", .serialized, .enabled(if: Peers.available, "make peers installs the MCP servers"))
final class ResidentMCPTests {
    let gw: TestGateway
    let dir: String

    init() async throws {
        dir = "/tmp/skelm-resident-mcp-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o755)
        for repo in ["shared", "private"] { try Peers.gitRepo(at: dir + "/" + repo) }
        let agent = try Peers.scriptedAgent(in: dir + "/agents")
        gw = try TestGateway(workflows: [
            "now.workflow.yaml": """
                id: now
                steps:
                  - id: now
                    mcp: { server: time, tool: get_current_time, arguments: { timezone: "${{ input.zone }}" } }
                """,
            "convert.workflow.yaml": """
                id: convert
                steps:
                  - id: convert
                    mcp: { server: time, tool: convert_time, arguments: { source_timezone: UTC, time: "12:00", target_timezone: Asia/Tokyo } }
                """,
            "status.workflow.yaml": """
                id: status
                steps:
                  - id: status
                    mcp: { server: git, tool: git_status, arguments: { repo_path: "\(dir)/${{ input.repo }}" } }
                """,
            "gate.workflow.yaml": """
                id: gate
                steps:
                  - id: allowed
                    agent: { agent: scripted, mcpServers: [time], prompt: "mcpcall time get_current_time" }
                  - id: direct
                    agent: { agent: scripted, mcpServers: [time], prompt: "mcpcall time convert_time" }
                """,
            "resident-agent.workflow.yaml": """
                id: resident-agent
                steps:
                  - id: say
                    agent: { agent: keeper, mcpServers: [time], prompt: hello }
                """,
        ], config: """
            server: { host: 127.0.0.1, port: 0 }
            workers: { minSpare: 1, max: 6, uidBase: UIDBASE, limits: { timeoutSeconds: 60, addressSpaceMB: 4096, workerAddressSpaceMB: 8192 } }
            defaults:
              permissions:
                fsRead: [\(dir)/shared, \(dir)/private]
                allowedAgents: [scripted, keeper]
                allowedMcpServers: [time, git]
                allowedTools: [time/get_current_time, git/git_status]
            agents:
              - id: scripted
                command: \(agent)
              - id: keeper
                command: \(agent)
                lifecycle: resident
            mcpServers:
              - id: time
                command: \(Peers.bin)/mcp-server-time
                args: [--local-timezone, UTC]
                lifecycle: resident
              - id: git
                command: \(Peers.bin)/mcp-server-git
                lifecycle: resident
                # Workers run as uids of their own: git must be told the repositories are safe to read.
                env: { GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: safe.directory, GIT_CONFIG_VALUE_0: "*" }
                permissions: { fsRead: [\(dir)/shared], allowedExecutables: [git] }
            """)
        try await gw.start()
    }

    deinit {
        gw.cleanupLater()
        try? FileManager.default.removeItem(atPath: dir)
    }

    func waitForState(_ id: String, _ state: String, restartsAtLeast: Int = 0) async throws -> JSONValue {
        try await gw.waitForResident("/v1/mcp-servers/\(id)", state, restartsAtLeast: restartsAtLeast)
    }

    func audit(_ action: String, run: JSONValue) async throws -> [JSONValue] {
        (try await gw.get("/audit?action=\(action)&limit=1000").json?["entries"].list ?? []).filter { $0["runId"] == run["id"] }
    }

    static func int(_ value: JSONValue?) -> Int? { if case let .number(n)? = value { Int(n) } else { nil } }

    /// The server's own process: the hosting worker's child.
    static func children(of pid: Int32) -> [Int32] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.flatMap { task -> [Int32] in
            let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? ""
            return text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
    }

    @Test("mcp steps call one long-lived server: the same process answers every run, each call is audited and counted")
    func calls() async throws {
        let before = try await waitForState("time", "running")
        let first = try await gw.run("now", ["zone": "Europe/Berlin"])
        #expect(first["status"] == "succeeded", "\(first)")
        #expect(first["output"]?["timezone"] == "Europe/Berlin", "\(first)")
        let second = try await gw.run("now", ["zone": "Asia/Tokyo"])
        #expect(second["output"]?["timezone"] == "Asia/Tokyo", "\(second)")
        let after = try await waitForState("time", "running")
        #expect(after["pid"] == before["pid"], "a resident server is not started per step: \(before) then \(after)")
        #expect((Self.int(after["calls"]) ?? 0) >= 2, "\(after)")
        let audited = try await audit("mcp.call", run: second)
        #expect(audited.contains { $0["details"]?["tool"] == "get_current_time" && $0["details"]?["outcome"] == "ok" }, "\(audited)")
        #expect(!audited.contains { $0["details"]?.jsonText.contains("Asia/Tokyo") == true }, "arguments are never audited")

        let listed = try await gw.get("/v1/registry/mcp-servers/time/tools").json
        #expect(Set(listed?["tools"].list.compactMap { $0["name"]?.stringValue } ?? []) == ["get_current_time", "convert_time"], "\(String(describing: listed))")
        #expect(listed?["serverInfo"]?["serverInfo"]?["name"] == "mcp-time")
        let status = try await gw.cli(["mcp", "status"])
        #expect(status.status == 0 && status.stdout.contains("time") && status.stdout.contains("running"), "\(status)")
        #expect(try await gw.get("/v1/mcp-servers/nobody").status == 404)
    }

    @Test("a tool outside allowedTools is refused before the call leaves the run, and audited")
    func refused() async throws {
        _ = try await waitForState("time", "running")
        let done = try await gw.run("convert")
        #expect(done["status"] == "failed", "\(done)")
        #expect(done["error"]?["code"] == "PermissionDenied", "\(done)")
        let denied = try await audit("permission.denied", run: done)
        #expect(denied.contains { $0["details"]?["value"] == "time/convert_time" }, "\(denied)")
    }

    @Test("an ephemeral agent reaches a resident server through its gate; a tool outside allowedTools is refused and audited")
    func gate() async throws {
        _ = try await waitForState("time", "running")
        let done = try await gw.run("gate")
        #expect(done["status"] == "succeeded", "\(done)")
        let steps = done["steps"].list
        let allowed = try #require(JSONValue.parse(steps.first { $0["path"] == "allowed" }?["output"]?.stringValue ?? ""), "\(steps)")
        #expect(allowed["listed"] == ["get_current_time"], "\(allowed)")
        #expect(allowed["called"]?["result"]?["isError"] == false, "\(allowed)")
        let direct = try #require(JSONValue.parse(steps.first { $0["path"] == "direct" }?["output"]?.stringValue ?? ""), "\(steps)")
        #expect(direct["called"]?["error"]?["message"]?.stringValue?.contains("allowedTools does not allow time/convert_time") == true, "\(direct)")
        let calls = try await audit("mcp.call", run: done)
        #expect(calls.contains { $0["details"]?["tool"] == "get_current_time" && $0["details"]?["outcome"] == "ok" }, "\(calls)")
        #expect(calls.contains { $0["details"]?["tool"] == "convert_time" && $0["details"]?["outcome"] == "denied" }, "\(calls)")
    }

    @Test("a resident server reads only what its own permissions name, even when the asking step may read more")
    func ceiling() async throws {
        _ = try await waitForState("git", "running")
        let shared = try await gw.run("status", ["repo": "shared"])
        #expect(shared["status"] == "succeeded", "\(shared)")
        #expect(shared["output"]?.stringValue?.contains("notes.txt") == true, "\(shared)")
        let hidden = try await gw.run("status", ["repo": "private"])
        #expect(hidden["status"] == "failed", "the server read a repository outside its ceiling: \(hidden)")
        #expect(hidden["error"]?["code"] == "MCPFailed", "\(hidden)")
        // Landlock hides the repository from the server: it cannot even see the path.
        #expect(hidden["error"]?["message"]?.stringValue?.contains("\(dir)/private") == true, "\(hidden)")
    }

    @Test("a resident server killed with SIGKILL is restarted, counted and audited, and answers again")
    func killed() async throws {
        let before = try await waitForState("time", "running")
        let worker = try #require(Self.int(before["pid"]).map { Int32($0) }, "\(before)")
        let server = try #require(Self.children(of: worker).first, "the worker \(worker) has no child")
        kill(server, SIGKILL)
        let after = try await waitForState("time", "running", restartsAtLeast: 1)
        #expect(after["lastExit"]?.stringValue?.contains("SIGKILL") == true, "\(after)")
        #expect(after["pid"] != before["pid"])
        let done = try await gw.run("now", ["zone": "UTC"])
        #expect(done["output"]?["timezone"] == "UTC", "\(done)")
        let exited = try await gw.get("/audit?action=mcp.exited").json?["entries"].list ?? []
        #expect(exited.contains { $0["details"]?["server"] == "time" }, "\(exited)")
    }

    @Test("a resident agent is not offered a resident server: the step says why")
    func residentAgent() async throws {
        let done = try await gw.run("resident-agent")
        #expect(done["status"] == "failed", "\(done)")
        #expect(done["error"]?["message"]?.stringValue?.contains("time is a resident MCP server") == true, "\(done)")
    }
}
