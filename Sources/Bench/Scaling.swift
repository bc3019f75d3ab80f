import Foundation
import SkelmClient
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// How the cost of a run grows with concurrency: runs/s, p99 and CPU per run
/// with 32, 64 and 128 clients against `maxConcurrentRuns` 8, 32 and 128; and
/// a backlog of queued async runs: memory while queued, time to drain, none lost.
enum Scaling {
    struct Point {
        var maxConcurrent: Int, clients: Int
        var runsPerSec: Double, p99: Double, cpuPerRunMs: Double
    }

    struct Backlog {
        var runs: Int
        var rssBeforeKB: Double, rssQueuedKB: Double
        var submitSeconds: Double, drainSeconds: Double
        var succeeded: Int
    }

    static func concurrency(runsEach: Int) async throws -> [Point] {
        var points: [Point] = []
        for maxConcurrent in [8, 32, 128] {
            let dir = "/tmp/skelm-bench-scaling-\(getpid())-\(maxConcurrent)"
            try makeProject(dir, spawn: "template", maxConcurrentRuns: maxConcurrent)
            let (gateway, client, _) = try await startGateway(dir)
            try await Task.sleep(for: .seconds(1))
            _ = try await concurrentRuns(client, total: 50, clients: 8)
            for clients in [32, 64, 128] {
                let cpuBefore = Internals.busyJiffies()
                let started = ContinuousClock.now
                let latencies = try await concurrentRuns(client, total: runsEach, clients: clients)
                let seconds = elapsedMs(since: started) / 1000
                points.append(Point(maxConcurrent: maxConcurrent, clients: clients, runsPerSec: Double(runsEach) / seconds,
                                    p99: Stats(samples: latencies).pct(0.99),
                                    cpuPerRunMs: Double(Internals.busyJiffies() - cpuBefore) * 10 / Double(runsEach)))
            }
            stopGateway(gateway, dir)
        }
        return points
    }

    /// `runs` async runs submitted by 32 clients as fast as the gateway takes
    /// them; the control plane's RSS once all are in, the time until the last
    /// has ended, and how many succeeded (all of them, or some were lost).
    static func queued(runs: Int) async throws -> Backlog {
        let dir = "/tmp/skelm-bench-backlog-\(getpid())"
        try makeProject(dir, spawn: "template")
        let (gateway, client, _) = try await startGateway(dir)
        defer { stopGateway(gateway, dir) }
        try await Task.sleep(for: .seconds(1))
        let rssBefore = Internals.rssKB(gateway.processIdentifier)
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for c in 0..<32 {
                group.addTask {
                    var i = c
                    while i < runs {
                        let r = try await client.post("/runs", json: ["workflow": "inc", "input": ["x": .number(Double(i))], "mode": "async"])
                        guard r.status == 202 else { fail("async run \(i) answered \(r.status): \(r.errorMessage)") }
                        i += 32
                    }
                }
            }
            try await group.waitForAll()
        }
        let submitSeconds = elapsedMs(since: started) / 1000
        let rssQueued = Internals.rssKB(gateway.processIdentifier)
        while true {
            let status = try await client.get("/gateway/status").json?["runs"]
            if num(status?["queued"]) == 0, num(status?["running"]) == 0 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let drainSeconds = elapsedMs(since: started) / 1000
        // Every run in the store (the gateway is the backlog's alone, after the warm-up-free start).
        let succeeded = Int(num(try await client.get("/v1/dashboard/overview").json?["totals"]?["succeeded"]))
        return Backlog(runs: runs, rssBeforeKB: rssBefore, rssQueuedKB: rssQueued, submitSeconds: submitSeconds,
                       drainSeconds: drainSeconds, succeeded: succeeded)
    }

    static func rows(_ points: [Point], queued b: Backlog) -> [(String, String, String)] {
        points.map { p in
            ("maxConcurrentRuns \(p.maxConcurrent), \(p.clients) clients: runs/s, p99, CPU per run",
             String(format: "%.0f runs/s", p.runsPerSec), String(format: "p99 %.1f ms, %.2f ms CPU", p.p99, p.cpuPerRunMs))
        } + [
            ("\(b.runs) async runs submitted by 32 clients: time to submit", String(format: "%.1f s", b.submitSeconds), ""),
            ("  control plane RSS before, and with them all queued", String(format: "%.1f MiB", b.rssBeforeKB / 1024),
             String(format: "%.1f MiB", b.rssQueuedKB / 1024)),
            ("  time until the last one ended, and how many succeeded", String(format: "%.1f s", b.drainSeconds), "\(b.succeeded) of \(b.runs)"),
        ]
    }
}
