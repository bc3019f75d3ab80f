import Foundation
import SkelmClient
import Testing
import Workflow

@Suite("Run events over SSE", .serialized)
final class EventStreamTests {
    let gw: TestGateway

    init() async throws {
        gw = try await TestGateway.started(workflows: TestWorkflows.all)
    }

    deinit { gw.cleanupLater() }

    @Test("a finished run's stream replays every event with its seq as id, then closes")
    func replay() async throws {
        let run = try await gw.run("fanout", ["numbers": [1, 2]])
        let id = run["id"]!.stringValue!
        let (events, _) = try await gw.events(id)
        #expect(events.map { Int($0.id ?? "") } == Array(1...events.count).map { Optional($0) })
        #expect(events.first?.type == "run.queued")
        #expect(events.last?.type == "run.succeeded")
        #expect(events.contains { $0.type == "step.finished" && $0.json?["step"] == "both/squares[1]/sq" })
        // The JSON form carries the same events.
        let page = try await gw.get("/runs/\(id)/events?since=2&limit=3", headers: [("Accept", "application/json")])
        #expect(page.json?["events"].list.compactMap { $0["seq"] } == [3, 4, 5])
        #expect(page.json?["lastSeq"] == .number(Double(events.count)))
    }

    @Test("a live stream tails the run, sends heartbeats while a step is quiet, and ends at the terminal event")
    func liveTail() async throws {
        // Long enough that a client connecting late on a loaded machine still sees the step running.
        let run = try await gw.run("slow", ["seconds": "8"], sync: false)
        let (events, heartbeats) = try await gw.events(run["id"]!.stringValue!)
        #expect(events.last?.type == "run.succeeded")
        #expect(events.map(\.type).contains("step.finished"))
        #expect(heartbeats >= 1, "no heartbeat during an 8 s step with sseHeartbeatSeconds: 1")
        let seqs = events.compactMap { Int($0.id ?? "") }
        #expect(seqs == Array(1...seqs.count))
    }

    @Test("reconnecting with Last-Event-ID gets exactly the events after it")
    func resume() async throws {
        let run = try await gw.run("fanout", ["numbers": [3, 4, 5]])
        let id = run["id"]!.stringValue!
        let all = try await gw.events(id).events
        let rest = try await gw.events(id, lastEventId: 4).events
        #expect(rest.map(\.id) == all.dropFirst(4).map(\.id))
        #expect(rest.map(\.data) == all.dropFirst(4).map(\.data))
        let none = try await gw.events(id, lastEventId: all.count).events
        #expect(none.isEmpty)
    }

    @Test("a stream of an unknown run is a 404; a bad Last-Event-ID a 400")
    func errors() async throws {
        #expect(try await gw.get("/runs/run_nope/events").status == 404)
        let run = try await gw.run("hello", ["name": "x"])
        let bad = try await gw.get("/runs/\(run["id"]!.stringValue!)/events", headers: [("Last-Event-ID", "abc")])
        #expect(bad.status == 400)
    }

    @Test("many subscribers of one run all get the whole stream")
    func fanOutToSubscribers() async throws {
        let run = try await gw.run("slow", ["seconds": "1"], sync: false)
        let id = run["id"]!.stringValue!
        let gw = self.gw
        let counts = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<20 { group.addTask { try await gw.events(id).events.count } }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        let total = try await gw.get("/runs/\(id)").json?["lastSeq"]
        #expect(Set(counts).count == 1)
        #expect(counts.first.map { JSONValue.number(Double($0)) } == total)
    }
}
