import Foundation
import PostgresFixture
import SkelmClient
import Testing
import Workflow

extension FleetTests {
    @Test("the same Idempotency-Key sent to two gateways at once makes one run: every answer names it, one 202 and the rest 200 replayed")
    func oneRunPerKeyAcrossTheFleet() async throws {
        let fleet = try await Self.fleet(["gw-a", "gw-b"])
        defer { fleet.cleanupLater() }
        let keys = 30
        let answers = try await withThrowingTaskGroup(of: (Int, Int, String?, String?).self) { group in
            for k in 0..<keys {
                for copy in 0..<4 {
                    group.addTask {
                        let gw = fleet.gateways[copy % 2]
                        let r = try await gw.post("/runs", ["workflow": "work", "input": ["i": .number(Double(k))]], headers: [("Idempotency-Key", "same-\(k)")])
                        return (k, r.status, r.json?["id"]?.stringValue, r.header("Idempotent-Replayed"))
                    }
                }
            }
            var all: [(Int, Int, String?, String?)] = []
            for try await a in group { all.append(a) }
            return all
        }
        for k in 0..<keys {
            let mine = answers.filter { $0.0 == k }
            #expect(Set(mine.map(\.2)).count == 1 && mine.allSatisfy { $0.2 != nil }, "key \(k): \(mine)")
            #expect(mine.filter { $0.1 == 202 }.count == 1 && mine.filter { $0.1 == 200 && $0.3 == "true" }.count == 3, "key \(k): \(mine)")
        }
        #expect(try await fleet.sql("SELECT count(*) FROM runs") == ["\(keys)"])
        #expect(try await fleet.sql("SELECT count(*) FROM idempotency_keys") == ["\(keys)"])
    }
}
