import Foundation
import PostgresFixture
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// Several real gateways, each with its own state dir, port and worker pool,
/// sharing one PostgreSQL database (a throwaway cluster).
@Suite("Fleet: several gateways, one database")
struct FleetTests {
    static let workflows: [String: String] = [
        "work.workflow.yaml": """
            id: work
            steps:
              - { id: first, idempotent: true, exec: { argv: [sh, -c, 'sleep 0.02; echo one'] } }
              - { id: second, idempotent: true, exec: { argv: [echo, two] } }
            """,
        "slow.workflow.yaml": """
            id: slow
            steps:
              - { id: a, exec: { argv: [sh, -c, 'sleep 0.4; echo a'] } }
              - { id: b, exec: { argv: [sh, -c, 'sleep 0.4; echo b'] } }
              - { id: c, exec: { argv: [sh, -c, 'sleep 0.4; echo c'] } }
            """,
        "long.workflow.yaml": """
            id: long
            steps:
              - { id: wait, exec: { argv: [sleep, "15"] } }
            """,
        "deploy.workflow.yaml": ApprovalTests.workflows["deploy.workflow.yaml"]!,
    ]

    struct Fleet {
        let url: String
        let database: String
        var gateways: [TestGateway]

        func sql(_ query: String) async throws -> [String] { try await PostgresCluster.shared.query(query, database: database) }

        func cleanupLater() { for gw in gateways { gw.cleanupLater() } }
    }

    static func fleet(_ ids: [String], workflows: [String: String] = FleetTests.workflows,
                      server: String = "{ host: 127.0.0.1, port: 0, maxConcurrentRuns: 8, maxBodyKB: 64, sseHeartbeatSeconds: 1 }") async throws -> Fleet {
        let url = try await PostgresCluster.shared.database()
        let name = String(url.split(separator: "/").last!.split(separator: "?").first!)
        var gateways: [TestGateway] = []
        for id in ids {
            let config = TestGateway.config(server: server) + "\nstorage: { driver: postgres, url: \"\(url)\", poolSize: 6, gatewayId: \(id) }\n"
            gateways.append(try await TestGateway.started(workflows: workflows, config: config))
        }
        return Fleet(url: url, database: name, gateways: gateways)
    }

    @Test("1,000 async runs spread over three gateways complete once each; a gateway SIGKILLed mid-load has its runs finished by the others, no completed step run twice")
    func proof() async throws {
        let fleet = try await Self.fleet(["gw-a", "gw-b", "gw-c"])
        defer { fleet.cleanupLater() }
        let total = 1000
        // Submitted round-robin, 24 at a time.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<24 {
                group.addTask {
                    for i in stride(from: lane, to: total, by: 24) {
                        _ = try await fleet.gateways[i % 3].run("work", ["i": .number(Double(i))], sync: false)
                    }
                }
            }
            try await group.waitForAll()
        }
        // Killed while it still holds runs, queued and running.
        let c = fleet.gateways[2]
        var held = 0
        for _ in 0..<200 {
            held = Int(try await fleet.sql("SELECT count(*) FROM runs WHERE owner = 'gw-c' AND status IN ('queued', 'running')").first ?? "0") ?? 0
            if held > 0 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(held > 0, "gateway C finished its share before it could be killed")
        let killedAt = Date()
        await c.stop(signal: SIGKILL)
        var done = 0
        for _ in 0..<1200 {
            done = Int(try await fleet.sql("SELECT count(*) FROM runs WHERE status IN ('succeeded', 'failed', 'cancelled')").first ?? "0") ?? 0
            if done == total { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(done == total, "only \(done) of \(total) runs ended")
        let statuses = try await fleet.sql("SELECT status, count(*) FROM runs GROUP BY status ORDER BY status")
        #expect(statuses == ["succeeded|\(total)"], "\(statuses)")
        // Each step finished once per run, whoever ran it.
        let repeated = try await fleet.sql("""
            SELECT run_id, step, count(*) FROM events WHERE type = 'step.finished' GROUP BY run_id, step HAVING count(*) > 1 LIMIT 5
            """)
        #expect(repeated.isEmpty, "\(repeated)")
        let finishedSteps = try await fleet.sql("SELECT count(*) FROM events WHERE type = 'step.finished'")
        #expect(finishedSteps == ["\(total * 2)"])
        // Every run's events number 1…n with no gap, and its end is its last.
        let gaps = try await fleet.sql("""
            SELECT r.id FROM runs r WHERE r.last_seq <> (SELECT count(*) FROM events e WHERE e.run_id = r.id)
               OR (SELECT type FROM events e WHERE e.run_id = r.id ORDER BY seq DESC LIMIT 1) <> 'run.succeeded' LIMIT 5
            """)
        #expect(gaps.isEmpty, "\(gaps)")
        // What C held was taken over: none of its runs is still its own, and they ended on A or B.
        #expect(try await fleet.sql("SELECT count(*) FROM runs WHERE owner = 'gw-c' AND finished_at > \(killedAt.timeIntervalSince1970 + 1)") == ["0"])
        let resumed = try await fleet.sql("SELECT count(*) FROM events WHERE type = 'run.resumed'")
        #expect((Int(resumed.first ?? "0") ?? 0) > 0, "no run of the killed gateway was resumed elsewhere")
        let owners = Set(try await fleet.sql("SELECT DISTINCT owner FROM runs"))
        #expect(owners.isSubset(of: ["gw-a", "gw-b", "gw-c"]) && owners.contains("gw-a") && owners.contains("gw-b"), "\(owners)")
        let members = try #require(try await fleet.gateways[0].get("/gateway/fleet").json)
        let alive = members["members"]?.array.filter { $0["alive"] == true }.compactMap { $0["id"]?.stringValue }
        #expect(alive == ["gw-a", "gw-b"], "\(members)")
    }
}
