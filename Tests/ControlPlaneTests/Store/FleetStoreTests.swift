@testable import ControlPlane
import Foundation
import PostgresFixture
import Testing
import Wire
import Workflow

/// Two gateways' stores on one PostgreSQL database: who may write what of a
/// run, and how one takes over the runs of another whose lease lapsed.
@Suite("Fleet store")
struct FleetStoreTests {
    static func pair() async throws -> (a: RunStore, b: RunStore) {
        let url = try PostgresURL(try await PostgresCluster.shared.database())
        return (try RunStore(postgres: url, poolSize: 2, member: "gw-a"), try RunStore(postgres: url, poolSize: 2, member: "gw-b"))
    }

    @Test("a running run is written only by the gateway that holds it: another's events, start and end are refused; a cancel is not")
    func fencing() async throws {
        let (a, b) = try await Self.pair()
        defer { Task { await a.close(); await b.close() } }
        _ = try await a.create(id: "r1", workflow: "wf", input: [:], idempotencyKey: nil, requestHash: "h", start: true)
        #expect(try await a.run("r1", withSteps: false)?.gateway == "gw-a")
        _ = try await a.appendSegment(runId: "r1", type: .stepStarted, step: "s", data: ["attempt": 1])
        await #expect(throws: RunStore.NotHeld.self) { _ = try await b.appendSegment(runId: "r1", type: .stepFinished, step: "s") }
        #expect(try await b.markStarted(runId: "r1", resumed: true) == nil)
        #expect(try await b.finish(runId: "r1", status: .succeeded, output: nil, error: nil).event == nil)
        #expect(try await a.run("r1", withSteps: false)?.status == .running)
        // A cancel comes from whichever gateway an operator asked.
        let cancelled = try await b.finish(runId: "r1", status: .cancelled, output: nil, error: nil, anywhere: true)
        #expect(cancelled.event?.type == "run.cancelled")
        // And what the holder's worker still reports is refused: run.cancelled stays last.
        await #expect(throws: RunStore.NotHeld.self) { _ = try await a.appendSegment(runId: "r1", type: .stepFinished, step: "s") }
        #expect(try await a.events(runId: "r1").last?.type == "run.cancelled")
    }

    @Test("runs of a gateway whose lease is live stay its own; once it lapses another claims them, and the first can no longer write them")
    func takeOver() async throws {
        let (a, b) = try await Self.pair()
        defer { Task { await a.close(); await b.close() } }
        // Leases of an hour: b must still be alive at the end however slowly a
        // loaded machine gets there; only a's leaving lapses anything.
        _ = try await a.renewLease(seconds: 3600, host: "h", address: nil, leader: false, joining: true)
        _ = try await b.renewLease(seconds: 3600, host: "h", address: nil, leader: false, joining: true)
        _ = try await a.create(id: "running", workflow: "wf", input: [:], idempotencyKey: nil, requestHash: "h", start: true)
        _ = try await a.create(id: "queued", workflow: "wf", input: [:], idempotencyKey: nil, requestHash: "h2", start: false)
        #expect(try await b.claimOrphans(limit: 10).isEmpty)
        try await a.leaveFleet()
        let claimed = try await b.claimOrphans(limit: 10)
        #expect(Set(claimed.map(\.id)) == ["running", "queued"])
        #expect(claimed.allSatisfy { $0.gateway == "gw-b" })
        // Claimed once: a second sweep finds nothing.
        #expect(try await b.claimOrphans(limit: 10).isEmpty)
        await #expect(throws: RunStore.NotHeld.self) { _ = try await a.appendSegment(runId: "running", type: .stepStarted, step: "s") }
        #expect(try await a.markStarted(runId: "queued", resumed: false) == nil)
        #expect(try await b.markStarted(runId: "queued", resumed: false)?.type == "run.started")
        let members = try await b.members()
        #expect(members.map(\.id) == ["gw-a", "gw-b"])
        #expect(members.map(\.alive) == [false, true])
    }

    @Test("a fleet pause is one row every gateway reads, set and lifted from any")
    func fleetPause() async throws {
        let (a, b) = try await Self.pair()
        defer { Task { await a.close(); await b.close() } }
        #expect(try await a.fleetPause() == nil)
        let was = try await a.setFleetPause(Admission.Pause(reason: "maintenance", by: "ops", since: Date()))
        #expect(was == nil)
        let seen = try await b.renewLease(seconds: 10, host: "h", address: nil, leader: false, joining: true)
        #expect(seen?.reason == "maintenance" && seen?.by == "ops")
        #expect(try await b.setFleetPause(nil)?.reason == "maintenance")
        #expect(try await a.fleetPause() == nil)
    }
}
