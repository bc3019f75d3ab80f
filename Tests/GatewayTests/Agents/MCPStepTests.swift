import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// `mcp` steps against mcp-server-time and mcp-server-git from PyPI, each
/// started in the step's sandbox.
@Suite("MCP steps", .serialized, .enabled(if: Peers.available, "make peers installs the MCP servers"))
final class MCPStepTests {
    let gw: TestGateway
    let dir: String

    init() async throws {
        dir = "/tmp/skelm-mcp-\(UUID().uuidString.prefix(8).lowercased())"
        let repo = dir + "/repo"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o755)
        try Peers.gitRepo(at: repo)
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
            "missing.workflow.yaml": """
                id: missing
                steps:
                  - id: call
                    mcp: { server: time, tool: no_such_tool }
                """,
            "status.workflow.yaml": """
                id: status
                steps:
                  - id: status
                    mcp: { server: git, tool: git_status, arguments: { repo_path: "\(repo)" } }
                """,
            "other-server.workflow.yaml": """
                id: other-server
                steps:
                  - id: call
                    permissions: { allowedMcpServers: [git] }
                    mcp: { server: time, tool: get_current_time, arguments: { timezone: UTC } }
                """,
        ], config: """
            server: { host: 127.0.0.1, port: 0 }
            workers: { minSpare: 1, max: 4, uidBase: UIDBASE, limits: { timeoutSeconds: 60, addressSpaceMB: 4096, workerAddressSpaceMB: 8192 } }
            defaults:
              permissions:
                allowedExecutables: [git]
                fsRead: [\(repo)]
                allowedMcpServers: [time, git]
                allowedTools: [time/get_current_time, time/no_such_tool, git/*]
            mcpServers:
              - id: time
                command: \(Peers.bin)/mcp-server-time
                args: [--local-timezone, UTC]
              - id: git
                command: \(Peers.bin)/mcp-server-git
                # Workers run as uids of their own: git must be told the repository is safe to read.
                env: { GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: safe.directory, GIT_CONFIG_VALUE_0: "\(repo)" }
            """)
        try await gw.start()
    }

    deinit {
        gw.cleanupLater()
        try? FileManager.default.removeItem(atPath: dir)
    }

    @Test("a tool's structured content is the step's output; the call is audited without its arguments")
    func structured() async throws {
        let done = try await gw.run("now", ["zone": "Europe/Berlin"])
        #expect(done["status"] == "succeeded", "\(done)")
        #expect(done["output"]?["timezone"] == "Europe/Berlin", "\(done)")
        #expect(done["output"]?["datetime"]?.stringValue != nil)
        let id = try #require(done["id"]?.stringValue)
        let calls = (try await gw.get("/audit?action=mcp.call").json?["entries"].list ?? []).filter { $0["runId"]?.stringValue == id }
        #expect(calls.count == 1)
        #expect(calls.first?["details"]?["tool"] == "get_current_time" && calls.first?["details"]?["outcome"] == "ok")
        #expect(!String(describing: calls).contains("Europe/Berlin"))
    }

    @Test("mcp-server-git reads a repository the step may read; its text is the output")
    func git() async throws {
        let done = try await gw.run("status")
        #expect(done["status"] == "succeeded", "\(done)")
        #expect(done["output"]?.stringValue?.contains("notes.txt") == true, "\(done)")
    }

    @Test("a tool outside allowedTools, or a server outside allowedMcpServers, is refused before anything starts, and audited")
    func refused() async throws {
        let tool = try await gw.run("convert")
        #expect(tool["error"]?["code"] == "PermissionDenied", "\(tool)")
        #expect(tool["error"]?["message"]?.stringValue?.contains("allowedTools does not allow time/convert_time") == true)
        let server = try await gw.run("other-server")
        #expect(server["error"]?["message"]?.stringValue?.contains("allowedMcpServers does not allow time") == true, "\(server)")
        let id = try #require(tool["id"]?.stringValue)
        let denied = (try await gw.get("/audit?action=permission.denied").json?["entries"].list ?? []).filter { $0["runId"]?.stringValue == id }
        #expect(denied.contains { $0["details"]?["dimension"] == "allowedTools" && $0["details"]?["decidedBy"] == "gateway" })
    }

    @Test("a tool the server does not have fails the step with the server's error")
    func unknownTool() async throws {
        let done = try await gw.run("missing")
        #expect(done["error"]?["code"] == "MCPFailed", "\(done)")
        #expect(done["error"]?["message"]?.stringValue?.contains("no_such_tool") == true, "\(done)")
    }
}
