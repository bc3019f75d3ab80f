import Foundation
import SkelmClient
import Testing
import Workflow

/// A run that finds a free slot is created already running; one that does not
/// waits as queued. Both tell the same story in their events and the audit chain.
@Suite("Run slots", .serialized)
struct SlotTests {
    @Test("a run with a free slot starts at creation, the next one queues; events and audit read the same for both")
    func freeSlotStartsAtOnce() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all, config: """
            server: { host: 127.0.0.1, port: 0, maxConcurrentRuns: 1 }
            workers: { minSpare: 1, max: 4, uidBase: UIDBASE }
            defaults: { permissions: { allowedExecutables: [echo, sh, sleep] } }
            """)
        defer { gw.cleanupLater() }
        // Long enough that the second request surely comes while it runs, on a loaded machine too.
        let first = try await gw.run("slow", ["seconds": 15], sync: false)
        let second = try await gw.run("slow", ["seconds": 0], sync: false)
        #expect(first["status"]?.stringValue == "running", "\(first)")
        #expect(second["status"]?.stringValue == "queued", "\(second)")
        var ids: [String] = []
        for run in [first, second] {
            let id = try #require(run["id"]?.stringValue)
            ids.append(id)
            _ = try await gw.waitForStatus(id, ["succeeded"])
            let events = try #require(try await gw.get("/runs/\(id)/events", headers: [("Accept", "application/json")]).json)
            let types = events["events"].list.compactMap { $0["type"]?.stringValue }
            #expect(Array(types.prefix(2)) == ["run.queued", "run.started"], "\(types)")
            #expect(types.last == "run.succeeded")
            let audit = try #require(try await gw.get("/audit?run=\(id)").json)
            let actions = audit["entries"].list.compactMap { $0["action"]?.stringValue }.reversed()
            #expect(Array(actions) == ["run.created", "run.started", "run.finished"], "\(actions)")
        }
        // The queued one started only after the first ended.
        let a = try #require(try await gw.get("/runs/\(ids[0])").json)
        let b = try #require(try await gw.get("/runs/\(ids[1])").json)
        let firstEnd = try #require(a["finishedAt"]?.stringValue)
        let secondStart = try #require(b["startedAt"]?.stringValue)
        #expect(secondStart >= firstEnd, "second started \(secondStart), first finished \(firstEnd)")
    }
}
