import Foundation
import SkelmClient
import Workflow

/// How quickly triggers turn into runs: a cron slot to its run's start with
/// 1,000 triggers armed, and webhook deliveries answered with a created run per
/// second (on loopback with auth off: the bench measures the fire path, not HMAC).
enum TriggerBench {
    struct Result {
        var slotDelay: Stats
        var deliveries: Int
        var deliveriesPerSec: Double
        var deliveryLatency: Stats
    }

    static func measure(seconds: Int, deliveries: Int, clients: Int) async throws -> Result {
        let dir = "/tmp/skelm-bench-triggers-\(getpid())"
        try makeProject(dir, spawn: "template")
        // 990 triggers that fire once a year and 10 that fire every second: the
        // scheduler's cost with many armed triggers, measured on the busy ones.
        var triggers = (0..<990).map { "  - { id: yearly\($0), cron: \"0 0 1 1 *\" }" }
        triggers += (0..<10).map { "  - { id: second\($0), cron: \"* * * * * *\" }" }
        try """
            id: tick
            steps:
              - { id: say, exec: { argv: [sh, -c, 'echo tick'] } }
            triggers:
            \(triggers.joined(separator: "\n"))
            """.write(toFile: dir + "/workflows/tick.workflow.yaml", atomically: true, encoding: .utf8)
        try """
            id: hooked
            steps:
              - { id: say, exec: { argv: [sh, -c, 'echo hooked'] } }
            triggers:
              - webhook: { path: bench }
                maxConcurrent: 1000
            """.write(toFile: dir + "/workflows/hooked.workflow.yaml", atomically: true, encoding: .utf8)
        let (gateway, client, _) = try await startGateway(dir)
        defer { stopGateway(gateway, dir) }

        try await Task.sleep(for: .seconds(seconds))
        var delays: [Double] = []
        for i in 0..<10 {
            let reply = try await client.get("/runs?limit=1000&trigger=tick.second\(i)")
            guard case let .array(runs)? = reply.json?["runs"] else { fail("GET /runs: \(reply.status)") }
            for run in runs {
                guard let slot = run["scheduledAt"]?.stringValue.flatMap({ try? Date($0, strategy: .iso8601) }),
                      let started = run["startedAt"]?.stringValue.flatMap({ try? Date($0, strategy: .iso8601) }) else { continue }
                delays.append(started.timeIntervalSince(slot) * 1000)
            }
        }
        // Stop the per-second triggers so the deliveries are measured alone. At
        // most 1,000 deliveries: the webhook's maxConcurrent, so none is refused
        // while the runs they created wait for a slot.
        for i in 0..<10 { _ = try await client.post("/triggers/tick.second\(i)/pause", json: [:]) }
        try await Task.sleep(for: .seconds(2))

        let started = ContinuousClock.now
        let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
            for c in 0..<clients {
                group.addTask {
                    var mine: [Double] = []
                    var i = c
                    while i < deliveries {
                        let t = ContinuousClock.now
                        let r = try await client.send(.POST, "/hooks/bench", body: Data(#"{"n":\#(i)}"#.utf8), headers: [("Content-Type", "application/json")])
                        guard r.status == 202 else { fail("delivery \(i) answered \(r.status): \(r.errorMessage)") }
                        mine.append(elapsedMs(since: t))
                        i += clients
                    }
                    return mine
                }
            }
            var all: [Double] = []
            for try await mine in group { all += mine }
            return all
        }
        let rate = Double(deliveries) / (elapsedMs(since: started) / 1000)
        return Result(slotDelay: Stats(samples: delays), deliveries: deliveries, deliveriesPerSec: rate, deliveryLatency: Stats(samples: latencies))
    }

    static func rows(_ r: Result) -> [(String, String, String)] {
        [
            ("cron slot to its run's start, 1,000 armed triggers (\(r.slotDelay.samples.count) fires)",
             String(format: "p50 %.1f ms", r.slotDelay.pct(0.5)), String(format: "p99 %.1f ms", r.slotDelay.pct(0.99))),
            ("webhook deliveries to run created, 32 clients (\(r.deliveries))", String(format: "%.0f /s", r.deliveriesPerSec),
             String(format: "p99 %.1f ms", r.deliveryLatency.pct(0.99))),
        ]
    }
}
