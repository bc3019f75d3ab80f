import ControlPlane
import Foundation
import SkelmClient

#if canImport(Glibc)
import Glibc
#endif

/// What a gateway that runs for months must not do: grow with every run, or
/// read its whole audit log to start.
enum LongRunning {
    struct Memory {
        var smallRuns: Int, largeRuns: Int
        var smallRSSKB: Double, largeRSSKB: Double
        var growth: Double { smallRSSKB > 0 ? (largeRSSKB - smallRSSKB) / smallRSSKB : 0 }
    }

    /// RSS of the control plane after `small` runs, then after `large` in all,
    /// on a gateway of its own, each reading taken once the runs have ended.
    static func memory(small: Int, large: Int) async throws -> Memory {
        let dir = "/tmp/skelm-bench-memory-\(getpid())"
        try makeProject(dir, spawn: "template")
        let (gateway, client, _) = try await startGateway(dir)
        defer { stopGateway(gateway, dir) }
        try await Task.sleep(for: .seconds(1))
        _ = try await concurrentRuns(client, total: small, clients: 32)
        try await Task.sleep(for: .seconds(1))
        let smallRSS = Internals.rssKB(gateway.processIdentifier)
        _ = try await concurrentRuns(client, total: large - small, clients: 32)
        try await Task.sleep(for: .seconds(1))
        return Memory(smallRuns: small, largeRuns: large, smallRSSKB: smallRSS, largeRSSKB: Internals.rssKB(gateway.processIdentifier))
    }

    /// Seconds from `skelm gateway start` to its discovery file, on a state dir
    /// whose audit log already holds `entries` entries (0: a fresh one).
    static func startTime(auditEntries entries: Int) async throws -> (seconds: Double, bytes: UInt64) {
        let dir = "/tmp/skelm-bench-start-\(getpid())-\(entries)"
        try makeProject(dir, spawn: "template")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/state", withIntermediateDirectories: true)
        if entries > 0 { try AuditLog.synthesize(stateDir: dir + "/state", entries: entries) }
        let bytes = (try? FileManager.default.attributesOfItem(atPath: dir + "/state/audit.jsonl")[.size] as? UInt64) ?? 0
        // The page cache would otherwise hold the log the synthesizer just wrote;
        // a gateway restarting after months finds it on disk.
        sync()
        if let drop = FileHandle(forWritingAtPath: "/proc/sys/vm/drop_caches") {
            drop.write(Data("1\n".utf8))
            try? drop.close()
        }
        let started = ContinuousClock.now
        let gateway = Process()
        gateway.executableURL = URL(fileURLWithPath: skelm)
        gateway.arguments = ["gateway", "start", "--config", dir + "/skelm.config.yaml"]
        gateway.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try gateway.run()
        defer {
            kill(gateway.processIdentifier, SIGTERM)
            gateway.waitUntilExit()
        }
        while ContinuousClock.now - started < .seconds(120) {
            if FileManager.default.fileExists(atPath: dir + "/state/gateway.json") {
                return (elapsedMs(since: started) / 1000, bytes)
            }
            if !gateway.isRunning { fail("the gateway on a \(entries)-entry audit log exited with \(gateway.terminationStatus)") }
            try await Task.sleep(for: .milliseconds(5))
        }
        fail("the gateway on a \(entries)-entry audit log did not start in 120 s")
    }

    static func rows(memory m: Memory, start fresh: Double, bigStart: (seconds: Double, bytes: UInt64), entries: Int) -> [(String, String, String)] {
        func n(_ v: Int) -> String { v.formatted(.number.grouping(.automatic).locale(Locale(identifier: "en_US"))) }
        return [
            ("control plane RSS after \(n(m.smallRuns)) runs", String(format: "%.1f MiB", m.smallRSSKB / 1024), ""),
            ("control plane RSS after \(n(m.largeRuns)) runs", String(format: "%.1f MiB", m.largeRSSKB / 1024),
             String(format: "%+.1f %%", m.growth * 100)),
            ("gateway start, fresh state dir", String(format: "%.2f s", fresh), ""),
            ("gateway start, audit log of \(n(entries)) entries (\(bigStart.bytes >> 20) MiB, cold cache)",
             String(format: "%.2f s", bigStart.seconds), ""),
        ]
    }
}
