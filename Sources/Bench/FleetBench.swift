import Foundation
import PostgresFixture
import SkelmClient

#if canImport(Glibc)
import Glibc
#endif

/// The same sync runs from 32 clients against one gateway on SQLite, one on
/// PostgreSQL, and three sharing one PostgreSQL (the clients spread over
/// them): what the shared store costs, and what more gateways on one
/// machine buy. The PostgreSQL is a throwaway cluster on this machine, with
/// fsync on (the SQLite row fsyncs too).
enum FleetBench {
    struct Row {
        var label: String
        var runsPerSec: Double, p99: Double, cpuPerRunMs: Double
    }

    static func measure(runs: Int) async throws -> [Row] {
        var rows: [Row] = []
        rows.append(try await setup("1 gateway, SQLite", gateways: 1, storage: nil, runs: runs))
        let one = try await PostgresCluster.durable.database()
        rows.append(try await setup("1 gateway, PostgreSQL", gateways: 1, storage: one, runs: runs))
        let three = try await PostgresCluster.durable.database()
        rows.append(try await setup("3 gateways, one PostgreSQL", gateways: 3, storage: three, runs: runs))
        return rows
    }

    private static func setup(_ label: String, gateways: Int, storage url: String?, runs: Int) async throws -> Row {
        var started: [(process: Process, client: GatewayClient, dir: String)] = []
        defer { for g in started { stopGateway(g.process, g.dir) } }
        for i in 0..<gateways {
            let dir = "/tmp/skelm-bench-fleet-\(getpid())-\(i)"
            try? FileManager.default.removeItem(atPath: dir)
            try makeProject(dir, spawn: "template", maxConcurrentRuns: 32,
                            storage: url.map { "{ driver: postgres, url: \"\($0)\", poolSize: 16, durability: \(durability), gatewayId: bench-\(i) }" })
            let (process, client, _) = try await startGateway(dir)
            started.append((process, client, dir))
        }
        try await Task.sleep(for: .seconds(1))
        let clients = started.map(\.client)
        _ = try await concurrentRuns(clients, total: 100, clients: 16)
        let cpuBefore = Internals.busyJiffies()
        let begun = ContinuousClock.now
        let latencies = try await concurrentRuns(clients, total: runs, clients: 32)
        let seconds = elapsedMs(since: begun) / 1000
        return Row(label: label, runsPerSec: Double(runs) / seconds, p99: Stats(samples: latencies).pct(0.99),
                   cpuPerRunMs: Double(Internals.busyJiffies() - cpuBefore) * 10 / Double(runs))
    }

    static func rows(_ rows: [Row]) -> [(String, String, String)] {
        rows.map { r in
            ("\(r.label): runs/s at 32 clients, p99, CPU per run", String(format: "%.0f runs/s", r.runsPerSec),
             String(format: "p99 %.1f ms, %.2f ms CPU", r.p99, r.cpuPerRunMs))
        }
    }
}
