import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// What a gateway finds on its host when it starts: leftovers of a killed one,
/// and another gateway's workers.
@Suite("Trust boundary: gateway start", .serialized)
struct GatewayStartTests {
    @Test("workspaces a killed gateway left behind are removed at the next start, and audited")
    func staleWorkspaces() async throws {
        let gw = try TestGateway(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        let stale = gw.stateDir + "/workspaces/0f1e2d3c-left-by-a-killed-gateway"
        try FileManager.default.createDirectory(atPath: stale + "/.tmp", withIntermediateDirectories: true)
        try "secret-ish output".write(toFile: stale + "/result.txt", atomically: true, encoding: .utf8)
        try await gw.start()
        #expect(!FileManager.default.fileExists(atPath: stale))
        let cleaned = try await gw.get("/audit?action=workspaces.cleaned").json?["entries"].list ?? []
        #expect(cleaned.first?["details"]?["removed"] == "1", "\(cleaned)")
    }

    @Test("a gateway stopped right after its runs leaves no workspace behind: its next start has none to clean")
    func stoppedCleanly() async throws {
        let gw = try TestGateway(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        try await gw.start()
        // Workspaces are removed after each job, off the run's path: a stop
        // right after the runs must still see every removal through.
        for i in 0..<8 {
            let run = try await gw.run("hello", ["name": .string("n\(i)")])
            #expect(run["status"] == "succeeded", "\(run)")
        }
        #expect(await gw.stop() == 0)
        let left = ((try? FileManager.default.contentsOfDirectory(atPath: gw.stateDir + "/workspaces")) ?? []).filter { !$0.hasPrefix(".") }
        #expect(left.isEmpty, "workspaces left behind: \(left)")
        try await gw.start()
        let cleaned = try await gw.get("/audit?action=workspaces.cleaned").json?["entries"].list ?? []
        #expect(cleaned.isEmpty, "\(cleaned)")
    }

    @Test("a gateway whose worker uid range is in use refuses to start and names the fix")
    func uidRangeInUse() async throws {
        guard geteuid() == 0 else { return }
        let gw = try TestGateway(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        let config = try String(contentsOfFile: gw.configPath, encoding: .utf8)
        guard let base = config.firstMatch(of: /uidBase: (\d+)/).flatMap({ UInt32($0.1) }) else {
            Issue.record("no uidBase in \(config)")
            return
        }
        // Another gateway's worker, as far as the kernel can tell.
        let squatter = Process()
        squatter.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        squatter.arguments = ["python3", "-c", "import os, time; os.setresuid(\(base + 7), \(base + 7), \(base + 7)); time.sleep(60)"]
        // Not the test run's output: `swift test` waits for every holder of it to close it.
        squatter.standardOutput = FileHandle.nullDevice
        squatter.standardError = FileHandle.nullDevice
        try squatter.run()
        defer {
            kill(squatter.processIdentifier, SIGKILL)
            squatter.waitUntilExit()
        }
        // Python's start can take seconds on a loaded host: the gateway starts only once the uid is taken.
        var squatting = false
        for _ in 0..<1500 where !squatting {
            squatting = (try? String(contentsOfFile: "/proc/\(squatter.processIdentifier)/status", encoding: .utf8))?.contains("\(base + 7)") ?? false
            if !squatting { try await Task.sleep(for: .milliseconds(20)) }
        }
        try #require(squatting, "the squatter never ran as uid \(base + 7)")
        await #expect(throws: GatewayFailure.self) { try await gw.start() }
        #expect(gw.logText.contains("workers.uidBase"), "\(gw.logText)")
        #expect(gw.logText.contains("pid \(squatter.processIdentifier) runs as uid \(base + 7)"), "\(gw.logText)")
    }

    @Test("a workspace root that is a symlink, that another user owns, or that sits in a directory others can write is refused, naming the fix; its target is left as it was")
    func workspaceRootOwnership() async throws {
        guard geteuid() == 0 else { return }
        let gw = try TestGateway(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        let config = try String(contentsOfFile: gw.configPath, encoding: .utf8)
        func use(_ root: String) throws {
            try config.replacingOccurrences(of: "workers: { ", with: "workers: { workspaceRoot: \"\(root)\", ")
                .write(toFile: gw.configPath, atomically: true, encoding: .utf8)
        }
        func refused(_ root: String, saying words: String) async throws {
            try use(root)
            try? FileManager.default.removeItem(atPath: gw.log)
            await #expect(throws: GatewayFailure.self) { try await gw.start() }
            #expect(gw.logText.contains("workers.workspaceRoot") && gw.logText.contains(words), "\(gw.logText)")
        }
        // A link to a directory of someone's choice: the gateway would make it 0711 and fill it.
        let target = gw.dir + "/elsewhere"
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        chmod(target, 0o755)
        try FileManager.default.createSymbolicLink(atPath: gw.dir + "/link", withDestinationPath: target)
        try await refused(gw.dir + "/link", saying: "is not a directory")
        var st = stat()
        #expect(stat(target, &st) == 0 && st.st_mode & 0o7777 == 0o755, "the link's target was changed")

        let theirs = gw.dir + "/theirs"
        try FileManager.default.createDirectory(atPath: theirs, withIntermediateDirectories: true)
        chown(theirs, 4_000_123, 4_000_123)
        try await refused(theirs, saying: "belongs to uid 4000123")

        // A link on the way that another user made, as anyone may in /tmp.
        try FileManager.default.createSymbolicLink(atPath: gw.dir + "/their-link", withDestinationPath: target)
        lchown(gw.dir + "/their-link", 4_000_123, 4_000_123)
        try await refused(gw.dir + "/their-link/workspaces", saying: "is a link that uid 4000123 made")
        #expect(!FileManager.default.fileExists(atPath: target + "/workspaces"), "the root was made through the link")

        // Anyone may rename what is in here.
        let open = gw.dir + "/open"
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: true)
        chmod(open, 0o777)
        try await refused(open + "/workspaces", saying: "\(open) can be written by other users")
        #expect(!FileManager.default.fileExists(atPath: open + "/workspaces"), "the root was made anyway")

        // With the sticky bit, as /tmp has, others cannot touch the gateway's entries.
        chmod(open, 0o1777)
        try use(open + "/workspaces")
        try await gw.start()
        let run = try await gw.run("hello", ["name": "sticky"])
        #expect(run["status"] == "succeeded", "\(run)")
    }
}
