import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// The egress proxy under many tunnels at once, from many jobs: it serves them
/// on its event loops (no thread per connection), relays each correctly, and
/// gives back every descriptor when they close.
@Suite("Egress under load", .serialized)
final class EgressLoadTests {
    let gw: TestGateway
    let upstream: Process
    let port: Int

    static let jobs = 12
    /// Under the proxy's 32 per job, and under the worker's process limit
    /// (its forwarder relays each tunnel on a thread of its own).
    static let tunnelsPerJob = 25

    /// Opens its tunnels, holds them all until a wall-clock instant every job
    /// shares (so all jobs' tunnels are open at once), then uses each one: half
    /// end their request with a half-close, which the proxy must pass on.
    static let probe = #"""
        import json, os, socket, time
        port, n, deadline = int(os.environ["UPSTREAM"]), int(os.environ["TUNNELS"]), float(os.environ["DEADLINE"])
        host, p = os.environ["HTTP_PROXY"].replace("http://", "").rsplit(":", 1)
        socks, refused = [], []
        for _ in range(n):
            s = socket.create_connection((host, int(p)), timeout=60)
            s.sendall(("CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (port, port)).encode())
            status = s.recv(4096).decode().split("\r\n")[0]
            if " 200 " in status:
                socks.append(s)
            else:
                refused.append(status)
        held = time.time() < deadline
        time.sleep(max(0.0, deadline - time.time()))
        ok = 0
        for i, s in enumerate(socks):
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if i % 2:
                s.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk: break
                data += chunk
            ok += data.startswith(b"HTTP/1.0 200") and data.endswith(b"hello from upstream")
            s.close()
        print(json.dumps({"open": len(socks), "refused": refused, "ok": ok, "held": held}))
        """#

    init() async throws {
        port = freePort()
        upstream = try await startUpstream(port: port)
        let probe = Self.probe.indented(by: 10)
        gw = try await TestGateway.started(workflows: [
            "tunnels.workflow.yaml": """
                id: tunnels
                input: { type: object, properties: { deadline: { type: string } } }
                steps:
                  - id: probe
                    exec:
                      interpreter: python3
                      script: |
                \(probe)
                      env: { UPSTREAM: "\(port)", TUNNELS: "\(Self.tunnelsPerJob)", DEADLINE: "${{ input.deadline }}" }
                """,
        ], config: """
            server: { host: 127.0.0.1, port: 0, maxConcurrentRuns: \(Self.jobs + 4) }
            workers: { minSpare: 2, max: \(Self.jobs + 4), uidBase: UIDBASE, limits: { timeoutSeconds: 120 } }
            defaults:
              permissions:
                allowedExecutables: [python3]
                networkEgress: { allowHosts: ["127.0.0.1:\(port)"] }
            """)
    }

    deinit {
        kill(upstream.processIdentifier, SIGKILL)
        upstream.waitUntilExit()
        gw.cleanupLater()
    }

    /// A field of /proc/<pid>/status, such as `Threads`.
    static func status(_ pid: Int32, _ field: String) -> Int {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = text.split(separator: "\n").first { $0.hasPrefix(field + ":") } ?? ""
        return Int(line.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces)) ?? -1
    }

    static func openFiles(_ pid: Int32) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?.count ?? -1
    }

    static func runAll(_ gw: TestGateway, deadline: TimeInterval) async throws -> [JSONValue] {
        try await withThrowingTaskGroup(of: JSONValue.self) { group in
            for _ in 0..<jobs {
                group.addTask { try await gw.run("tunnels", ["deadline": .string(String(format: "%.3f", deadline))]) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
    }

    @Test("300 tunnels of 12 jobs open at once are served without a thread each, all relay, and all are given back")
    func manyTunnels() async throws {
        let pid = try #require(gw.process?.processIdentifier)
        let total = Self.jobs * Self.tunnelsPerJob
        let baseThreads = Self.status(pid, "Threads")
        let baseFiles = Self.openFiles(pid)
        // Only this test's tunnels: the suite's gateway may have allowed others before.
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let since = formatter.string(from: Date())
        // Far enough ahead for every job to start and open its tunnels on a busy machine.
        let deadline = Date().timeIntervalSince1970 + 40
        let gw = self.gw
        async let runs = Self.runAll(gw, deadline: deadline)
        // While every tunnel is held open: count the gateway's threads.
        var allowed = 0
        var peakThreads = 0
        var heldFiles = 0
        while Date().timeIntervalSince1970 < deadline - 1 {
            allowed = try await gw.get("/audit?action=egress.allowed&since=\(since)&limit=1000").json?["entries"].list.count ?? 0
            peakThreads = max(peakThreads, Self.status(pid, "Threads"))
            // Counted the moment the last tunnel is in, before any job's deadline closes one.
            heldFiles = Self.openFiles(pid)
            if allowed >= total { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(allowed == total, "\(allowed) of \(total) tunnels were open before the jobs used them")
        #expect(heldFiles >= baseFiles + 2 * total, "descriptors: \(baseFiles) before, \(heldFiles) with every tunnel open")
        #expect(peakThreads < baseThreads + 100, "threads: \(baseThreads) before, \(peakThreads) with \(allowed) tunnels open")

        let results = try await runs
        #expect(results.count == Self.jobs)
        for run in results {
            #expect(run["status"] == "succeeded", "\(run)")
            let out = run["output"]
            #expect(out?["open"] == .number(Double(Self.tunnelsPerJob)), "\(run)")
            #expect(out?["ok"] == .number(Double(Self.tunnelsPerJob)), "\(run)")
            #expect(out?["held"] == true, "a job opened its tunnels after the shared instant: \(run)")
        }

        // Every tunnel closed: the proxy holds none of their descriptors any more.
        var files = Self.openFiles(pid)
        for _ in 0..<100 where files > baseFiles + 40 {
            try await Task.sleep(for: .milliseconds(100))
            files = Self.openFiles(pid)
        }
        #expect(files <= baseFiles + 40, "descriptors: \(baseFiles) before, \(files) after every tunnel closed")
    }
}
