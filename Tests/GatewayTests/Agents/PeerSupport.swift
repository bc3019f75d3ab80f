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

    /// The events of one kind a run recorded.
    static func events(_ all: [JSONValue], _ type: String) -> [JSONValue] { all.filter { $0["type"]?.stringValue == type } }
}
