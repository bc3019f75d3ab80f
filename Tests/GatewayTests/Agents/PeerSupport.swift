import Foundation
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// Where `make peers` installs the real agents and MCP servers the agent and
/// mcp tests drive (world-readable: workers run as uids of their own).
enum Peers {
    static let root = ProcessInfo.processInfo.environment["SKELM_PEERS"] ?? "/var/tmp/skelm-peers-\(getuid())"
    static var bin: String { root + "/venv/bin" }
    static var available: Bool { FileManager.default.isExecutableFile(atPath: bin + "/fast-agent") }

    /// The scripted agent, written into `dir` with the peers' Python in its `#!` line.
    static func scriptedAgent(in dir: String) throws -> String {
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/acp/scripted_agent.py").path
        let text = try String(contentsOfFile: source, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o755)
        let path = dir + "/scripted_agent.py"
        try ("#!\(bin)/python3.13\n" + text).write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    /// A git repository at `path` with one uncommitted file, readable by workers' uids.
    static func gitRepo(at path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        for args in [["init", "-q", path], ["-C", path, "config", "user.email", "t@example.com"], ["-C", path, "config", "user.name", "t"]] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
            p.arguments = args
            try p.run()
            p.waitUntilExit()
        }
        try "draft\n".write(toFile: path + "/notes.txt", atomically: true, encoding: .utf8)
        let chmodAll = Process()
        chmodAll.executableURL = URL(fileURLWithPath: "/bin/chmod")
        chmodAll.arguments = ["-R", "a+rX", path]
        try chmodAll.run()
        chmodAll.waitUntilExit()
    }

    /// The events of one kind a run recorded.
    static func events(_ all: [JSONValue], _ type: String) -> [JSONValue] { all.filter { $0["type"]?.stringValue == type } }
}

extension TestGateway {
    /// A resident peer's status (`/v1/agents/:id`, `/v1/mcp-servers/:id`) once
    /// it is in `state` after at least `restartsAtLeast` restarts.
    func waitForResident(_ route: String, _ state: String, restartsAtLeast: Int = 0) async throws -> JSONValue {
        for _ in 0..<1500 {
            if let s = try await get(route).json, s["state"]?.stringValue == state,
               case let .number(r)? = s["restarts"], Int(r) >= restartsAtLeast { return s }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw GatewayFailure(description: "\(route) never reached \(state)")
    }
}
