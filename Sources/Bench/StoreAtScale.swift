import ControlPlane
import Foundation
// GRDB comes with ControlPlane; the bench names it only to fill a store in one statement.
import GRDB
import SkelmClient

#if canImport(Glibc)
import Glibc
#endif

/// The API's reads over a store that has been in use for a while: a gateway
/// started on a run store already holding `runs` finished runs.
enum StoreAtScale {
    struct Result {
        var runs: Int
        var fillSeconds: Double
        var list: Stats
        var overview: Stats
    }

    static func measure(runs: Int, requests: Int) async throws -> Result {
        let dir = "/tmp/skelm-bench-scale-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir + "/state", withIntermediateDirectories: true)
        chmod(dir, 0o711)
        // No workload: one spare worker, so the pool's start does not compete with the reads.
        try """
            server: { host: 127.0.0.1, port: 0 }
            workers: { minSpare: 1, max: 2 }
            storage: { durability: \(durability) }
            stateDir: state
            """.write(toFile: dir + "/skelm.config.yaml", atomically: true, encoding: .utf8)
        let started = ContinuousClock.now
        try fill(dir + "/state/skelm.db", runs: runs)
        let fillSeconds = elapsedMs(since: started) / 1000

        let (gateway, client, _) = try await startGateway(dir)
        defer { stopGateway(gateway, dir) }
        let overview = try await client.get("/v1/dashboard/overview?since=2000-01-01T00:00:00Z").json
        guard num(overview?["totals"]?["total"]) == Double(runs) else {
            fail("the gateway sees \(num(overview?["totals"]?["total"])) runs, not the \(runs) filled in")
        }
        return Result(runs: runs, fillSeconds: fillSeconds,
                      list: try await latencies(client, "/runs?limit=50", requests),
                      overview: try await latencies(client, "/v1/dashboard/overview", requests))
    }

    /// The schema comes from RunStore itself (its migrations); the rows from one
    /// INSERT … SELECT over a counter. Finished runs only, so the gateway resumes
    /// none: 80 % succeeded, 15 % failed, 5 % cancelled, over 20 workflows, one
    /// every `spacing` seconds back from now (with 200,000, the last 30 days),
    /// each 5 to 55 ms long. Runs carry no events or step rows: no read measured
    /// here touches them.
    static func fill(_ path: String, runs: Int) throws {
        _ = try RunStore(path: path, durability: .normal)
        var config = Configuration()
        // A scratch store: nothing to lose in a crash, and the random ids of the
        // primary key index touch pages all over the file.
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = OFF; PRAGMA cache_size = -262144")
        }
        let db = try DatabaseQueue(path: path, configuration: config)
        let now = Date().timeIntervalSince1970, spacing = 30 * 86400 / 200_000.0
        try db.write { db in
            try db.execute(sql: """
                WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
                INSERT INTO runs (id, workflow, status, input, output, error, created_at, started_at, finished_at, last_seq, segments)
                SELECT 'run_' || lower(hex(randomblob(16))), 'wf' || (i % 20),
                       CASE WHEN i % 20 < 16 THEN 'succeeded' WHEN i % 20 < 19 THEN 'failed' ELSE 'cancelled' END,
                       '{"x":' || i || '}',
                       CASE WHEN i % 20 < 16 THEN '{"x":' || (i + 1) || '}' END,
                       CASE WHEN i % 20 = 19 THEN '{"code":"Cancelled","message":"cancelled by bench"}'
                            WHEN i % 20 >= 16 THEN '{"code":"' || CASE i % 3 WHEN 0 THEN 'ExecFailed' WHEN 1 THEN 'Timeout' ELSE 'PermissionDenied' END
                                                   || '","step":"add","message":"exit status 1"}' END,
                       ? - i * ?, ? - i * ? + 0.001, ? - i * ? + 0.006 + (i % 101) * 0.0005, 4, 1
                FROM n
                """, arguments: [runs, now, spacing, now, spacing, now, spacing])
        }
    }

    /// Sequential requests, a new connection each (as the other API rows).
    static func latencies(_ client: GatewayClient, _ path: String, _ requests: Int) async throws -> Stats {
        var stats = Stats(samples: [])
        for _ in 0..<requests {
            let t = ContinuousClock.now
            let reply = try await client.get(path)
            stats.samples.append(elapsedMs(since: t))
            guard reply.status == 200 else { fail("GET \(path) answered \(reply.status): \(reply.errorMessage)") }
        }
        return stats
    }
}
