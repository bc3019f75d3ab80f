@testable import ControlPlane
import Foundation
import PostgresFixture
import Testing
import Wire
import Workflow

/// One contract, two engines: every test here runs against SQLite and against
/// PostgreSQL (a throwaway cluster), so neither can drift from the other.
enum Engine: String, CaseIterable, CustomTestStringConvertible {
    case sqlite, postgres
    var testDescription: String { rawValue }

    func store() async throws -> RunStore {
        switch self {
        case .sqlite:
            let dir = try StoreScratch.directory("contract")
            return try RunStore(path: dir + "/skelm.db")
        case .postgres:
            return try RunStore(postgres: try PostgresURL(try await PostgresCluster.shared.database()), poolSize: 4)
        }
    }
}

@Suite("Store contract")
struct StoreContractTests {
    func newRun(_ store: RunStore, _ id: String = "run_" + UUID().uuidString, workflow: String = "wf", start: Bool = true,
                key: String? = nil, hash: String = "h") async throws -> RunStore.Created {
        try await store.create(id: id, workflow: workflow, input: ["n": 1], idempotencyKey: key, requestHash: hash, start: start)
    }

    @Test("creating a run: idempotency keys return the same run, or a conflict for a different request", arguments: Engine.allCases)
    func createAndIdempotency(_ engine: Engine) async throws {
        let store = try await engine.store()
        defer { Task { await store.close() } }
        guard case let .created(run, queued, started) = try await newRun(store, "r1", key: "k1") else { Issue.record("not created"); return }
        #expect(run.status == .running && run.input == ["n": 1] && run.segments == 1)
        #expect(queued.seq == 1 && queued.type == "run.queued" && started?.seq == 2)
        guard case let .existing(again) = try await newRun(store, "r2", key: "k1") else { Issue.record("not existing"); return }
        #expect(again.id == "r1")
        guard case let .conflict(runId) = try await newRun(store, "r3", key: "k1", hash: "other") else { Issue.record("no conflict"); return }
        #expect(runId == "r1")
        #expect(try await store.run("r2") == nil)
    }

    @Test("events number from 1 in order, and step events keep the checkpoints a resumed run starts from", arguments: Engine.allCases)
    func eventsAndCheckpoints(_ engine: Engine) async throws {
        let store = try await engine.store()
        defer { Task { await store.close() } }
        _ = try await newRun(store, "r")
        _ = try await store.append(runId: "r", type: .stepStarted, step: "a", data: ["attempt": 1])
        _ = try await store.append(runId: "r", type: .stepFinished, step: "a", data: ["attempt": 1, "output": ["x": "y"]])
        _ = try await store.append(runId: "r", type: .stepStarted, step: "b", data: ["attempt": 2])
        _ = try await store.append(runId: "r", type: .stepStarted, step: "c", data: ["attempt": 1])
        _ = try await store.append(runId: "r", type: .stepFailed, step: "c", message: "nope", data: ["attempt": 1, "willRetry": true])
        // A message with a NUL (a step's stderr can hold one) is kept, not a failed write.
        _ = try await store.append(runId: "r", type: .stepSkipped, step: "d", message: "skipped\0here")
        let events = try await store.events(runId: "r")
        #expect(events.map(\.seq) == Array(1...8))
        #expect(try await store.events(runId: "r", since: 6).map(\.seq) == [7, 8])
        #expect(try await store.checkpoints(runId: "r") == ["a": ["x": "y"]])
        #expect(try await store.inFlight(runId: "r") == ["b": 2, "c": 1])
        let steps = try #require(try await store.run("r")?.steps)
        #expect(steps.map(\.path) == ["a", "b", "c", "d"])
        #expect(steps.map(\.status) == [.succeeded, .running, .retrying, .skipped])
    }

    @Test("a run ends once; lists page newest first by (createdAt, id), and an unknown cursor is refused", arguments: Engine.allCases)
    func finishAndList(_ engine: Engine) async throws {
        let store = try await engine.store()
        defer { Task { await store.close() } }
        for i in 0..<5 { _ = try await newRun(store, "r\(i)", workflow: i % 2 == 0 ? "even" : "odd") }
        let ended = try await store.finish(runId: "r1", status: .failed, output: nil,
                                           error: StepFailure(.execFailed, step: "s", message: "boom"))
        #expect(ended.event?.type == "run.failed")
        #expect(try await store.finish(runId: "r1", status: .succeeded, output: nil, error: nil).event == nil)
        let failed = try #require(try await store.run("r1"))
        #expect(failed.status == .failed && failed.error?.message == "boom")
        let all = try await store.list(limit: 10)
        #expect(all.count == 5)
        let page1 = try await store.list(limit: 2)
        let page2 = try await store.list(limit: 2, before: page1.last?.id)
        #expect(page1.map(\.id) + page2.map(\.id) == Array(all.prefix(4)).map(\.id))
        #expect(try await store.list(workflow: "even").count == 3)
        #expect(try await store.list(status: .failed).map(\.id) == ["r1"])
        await #expect(throws: RunStore.UnknownCursor.self) { _ = try await store.list(before: "nope") }
        #expect(Set(try await store.unfinished().map(\.id)) == ["r0", "r2", "r3", "r4"])
    }

    @Test("a parked run waits on approvals, waits and child runs, and goes back to the queue when the last is resolved", arguments: Engine.allCases)
    func parks(_ engine: Engine) async throws {
        let store = try await engine.store()
        defer { Task { await store.close() } }
        _ = try await newRun(store, "p")
        // As a segment reports them: each step starts, then parks.
        for step in ["ok?", "w", "inv"] {
            _ = try await store.append(runId: "p", type: .stepStarted, step: step, data: ["attempt": 1])
            _ = try await store.append(runId: "p", type: .stepParked, step: step)
        }
        let now = Date()
        let approval = ApprovalRecord(id: "ap1", runId: "p", workflow: "wf", step: "ok?", message: "go?", requester: "test", status: .pending,
                                      onTimeout: "deny", createdAt: now, expiresAt: now.addingTimeInterval(-1))
        let wait = WaitRecord(runId: "p", step: "w", kind: .wait, childRunId: nil, message: "post it", status: .pending, onTimeout: nil,
                              expiresAt: nil, createdAt: now.timeIntervalSince1970, resolvedAt: nil)
        let parked = try #require(try await store.park(runId: "p", approvals: [approval], waits: [wait],
                                                       children: [ChildPlan(id: "c", workflow: "child", input: [:], step: "inv")]))
        #expect(parked.filter { $0.runId == "p" }.map(\.type).contains("run.waiting"))
        #expect(try await store.run("p")?.status == .waiting)
        #expect(try await store.run("c")?.parentRunId == "p")
        #expect(try await store.expiredApprovals().map(\.id) == ["ap1"])
        #expect(try await store.pendingWaits(runId: "p").map(\.step).sorted() == ["inv", "w"])

        guard case let .decided(decided, _, queued) = try await store.decide(id: "ap1", status: .approved, actor: "alice", reason: nil) else {
            Issue.record("not decided"); return
        }
        #expect(decided.decidedBy == "alice" && !queued)
        guard case .alreadyDecided = try await store.decide(id: "ap1", status: .denied, actor: "bob", reason: nil) else {
            Issue.record("decided twice"); return
        }
        guard case let .resolved(_, queued: afterWait) = try await store.resolveWait(runId: "p", step: "w", output: ["v": 1], actor: "alice") else {
            Issue.record("wait not resolved"); return
        }
        #expect(!afterWait)
        guard case .notWaiting = try await store.resolveWait(runId: "p", step: "w", output: ["v": 2], actor: "alice") else {
            Issue.record("resolved twice"); return
        }
        _ = try await store.markStarted(runId: "c", resumed: false)
        let childEnd = try await store.finish(runId: "c", status: .succeeded, output: ["child": true], error: nil)
        #expect(childEnd.parent == .ready(parentId: "p"))
        #expect(try await store.run("p")?.status == .queued)
        let checkpoints = try await store.checkpoints(runId: "p")
        #expect(checkpoints["ok?"]?["approved"] == true && checkpoints["ok?"]?["actor"] == "alice")
        #expect(checkpoints["w"] == ["v": 1] && checkpoints["inv"] == ["child": true], "\(checkpoints)")
        #expect(try await store.approvals(status: .approved).map(\.id) == ["ap1"])
    }

    @Test("a crash between a resolution and the run's next segment is found again: stalled and orphaned runs", arguments: Engine.allCases)
    func stalled(_ engine: Engine) async throws {
        let store = try await engine.store()
        defer { Task { await store.close() } }
        _ = try await newRun(store, "s")
        let now = Date()
        let approval = ApprovalRecord(id: "ap", runId: "s", workflow: "wf", step: "gate", message: "m", requester: "t", status: .pending,
                                      onTimeout: "deny", createdAt: now)
        _ = try await store.park(runId: "s", approvals: [approval], waits: [], children: [ChildPlan(id: "k", workflow: "child", input: [:], step: "inv")])
        _ = try await store.decide(id: "ap", status: .denied, actor: "bob", reason: "no")
        #expect(try await store.stalledWaiting().isEmpty, "still waits on its child")
        let ended = try await store.finish(runId: "s", status: .failed, output: nil, error: StepFailure(.approvalDenied, step: "gate", message: "denied"))
        // The end reports the child for the caller to cancel; until it is, the child is an orphan.
        #expect(ended.children == ["k"])
        #expect(try await store.orphanedChildren() == ["k"])
        _ = try await newRun(store, "s2")
        _ = try await store.park(runId: "s2", approvals: [ApprovalRecord(id: "ap2", runId: "s2", workflow: "wf", step: "gate", message: "m",
                                                                         requester: "t", status: .pending, onTimeout: "deny", createdAt: now)],
                                 waits: [], children: [])
        _ = try await store.decide(id: "ap2", status: .expired, actor: "gateway", reason: nil)
        let stalled = try await store.stalledWaiting()
        #expect(stalled.map(\.runId) == ["s2"])
        #expect(stalled.first?.failed?.code == FailureCode.approvalExpired.rawValue && stalled.first?.failed?.step == "gate")
    }

    @Test("the dashboard's aggregates agree between engines", arguments: Engine.allCases)
    func dashboard(_ engine: Engine) async throws {
        let store = try await engine.store()
        defer { Task { await store.close() } }
        for i in 0..<6 {
            _ = try await newRun(store, "d\(i)", workflow: i < 4 ? "busy" : "calm")
            if i < 3 {
                _ = try await store.finish(runId: "d\(i)", status: .failed, output: nil,
                                           error: StepFailure(i == 0 ? .timeout : .execFailed, step: "s\(i)", message: i == 1 ? "m1 with a NUL \0 in it" : "m\(i)"))
            } else if i < 5 {
                _ = try await store.finish(runId: "d\(i)", status: .succeeded, output: ["ok": true], error: nil)
            }
        }
        let window = Dashboard.Window(since: Date().addingTimeInterval(-3600), until: Date().addingTimeInterval(60))
        let overview = try await store.overview(window)
        #expect(overview.totals.total == 6 && overview.totals.failed == 3 && overview.totals.succeeded == 2 && overview.totals.running == 1)
        #expect(overview.window.workflows == 2 && overview.window.durationMs.count == 5 && overview.window.durationMs.p95 != nil)
        let stats = try await store.workflowStats(window)
        #expect(stats.map(\.workflow) == ["busy", "calm"] && stats[0].failed == 3)
        let errors = try await store.errors(window)
        #expect(errors.total == 3)
        #expect(errors.byCode.map(\.code) == [FailureCode.execFailed.rawValue, FailureCode.timeout.rawValue])
        #expect(errors.byCode[0].count == 2 && errors.byCode[0].example.runId == "d2" && errors.byCode[0].example.step == "s2")
        #expect(errors.byWorkflow.allSatisfy { $0.workflow == "busy" })
        let recent = try await store.recentRuns(status: .failed, workflow: nil, limit: 10)
        #expect(Set(recent.compactMap(\.errorCode)) == [FailureCode.execFailed.rawValue, FailureCode.timeout.rawValue])
        let series = try await store.timeSeries(window, bucket: .hour, workflow: "busy")
        #expect(series.reduce(0) { $0 + $1.counts.total } == 4)
    }

    @Test("triggers: a reload's sync, slots accounted once, and the buffer", arguments: Engine.allCases)
    func triggers(_ engine: Engine) async throws {
        let store = try await engine.store()
        defer { Task { await store.close() } }
        let trigger = Trigger(name: "tick", kind: .interval(everyMs: 1000, jitterMs: 0))
        let now = Date()
        let added = try await store.applySync(declared: [.init(id: "wf:tick", workflow: "wf", trigger: trigger)], others: [:], now: now)
        #expect(added == ["wf:tick": .added])
        #expect(try await store.applySync(declared: [.init(id: "wf:tick", workflow: "wf", trigger: trigger)], others: [:], now: now).isEmpty)
        let slot = now.addingTimeInterval(1)
        let origin = RunStore.fireOrigin(triggerId: "wf:tick", slot: slot, next: slot.addingTimeInterval(1), buffered: nil, scheduledAt: slot)
        guard case .created = try await store.create(id: "f1", workflow: "wf", input: [:], idempotencyKey: nil, requestHash: "",
                                                     start: true, origin: origin) else { Issue.record("fire made no run"); return }
        // The same slot again: the fire conflicts, and no run is left behind.
        await #expect(throws: FireConflict.self) {
            _ = try await store.create(id: "f2", workflow: "wf", input: [:], idempotencyKey: nil, requestHash: "", start: true, origin: origin)
        }
        #expect(try await store.run("f2") == nil)
        try await store.account("wf:tick", lastSlot: slot.addingTimeInterval(5), next: nil, clearNext: true, skipped: 2)
        #expect(try await store.buffer("wf:tick", slot: nil, input: ["b": 1], reason: "overlap", max: 1, next: nil))
        #expect(try await !store.buffer("wf:tick", slot: nil, input: ["b": 2], reason: "overlap", max: 1, next: nil))
        let row = try #require(try await store.triggers().first)
        #expect(row.fired == 1 && row.skipped == 2 && row.dropped == 1 && row.nextFireAt == nil && !row.paused)
        #expect(row.lastSlotAt == slot.addingTimeInterval(5).timeIntervalSince1970)
        #expect(try await store.bufferedFires("wf:tick").map(\.input) == [#"{"b":1}"#])
        #expect(try await store.inflightByTrigger() == ["wf:tick": ["f1"]])
        let paused = try await store.setPaused("wf:tick", paused: true, note: "maintenance", by: "alice", now: now)
        #expect(paused?.paused == true && paused?.pausedBy == "alice")
        #expect(try await store.triggers().first?.paused == true)
        _ = try await store.finish(runId: "f1", status: .failed, output: nil, error: StepFailure(.execFailed, step: "s", message: "x"))
        #expect(try await store.triggers().first?.lastOutcome == "failed")
    }

    @Test("queues: dedupe ids, a message taken once, failed runs retried then dead-lettered, redrive", arguments: Engine.allCases)
    func queues(_ engine: Engine) async throws {
        let store = try await engine.store()
        defer { Task { await store.close() } }
        let now = Date()
        guard case let .added(m) = try await store.enqueue(queue: "q", body: ["job": 1], dedupeId: "d1", maxDepth: 10, now: now) else {
            Issue.record("not added"); return
        }
        guard case let .duplicate(same) = try await store.enqueue(queue: "q", body: ["job": 2], dedupeId: "d1", maxDepth: 10, now: now) else {
            Issue.record("not deduplicated"); return
        }
        #expect(same.id == m.id)
        let take = RunStore.takeMessage(m, maxAttempts: 1, visibility: 60, now: now)
        let origin = RunOrigin(triggerId: "wf:q", scheduledAt: nil, record: take)
        _ = try await store.applySync(declared: [.init(id: "wf:q", workflow: "wf", trigger: Trigger(name: "q", kind: .queue(.init(queue: "q"))))],
                                      others: [:], now: now)
        _ = try await store.create(id: "qr", workflow: "wf", input: [:], idempotencyKey: nil, requestHash: "", start: true, origin: origin)
        await #expect(throws: FireConflict.self) {
            _ = try await store.create(id: "qr2", workflow: "wf", input: [:], idempotencyKey: nil, requestHash: "", start: true,
                                       origin: RunOrigin(triggerId: "wf:q", scheduledAt: nil, record: take))
        }
        #expect(try await store.takeable(queue: "q", limit: 10, now: now).isEmpty)
        _ = try await store.finish(runId: "qr", status: .failed, output: nil, error: StepFailure(.execFailed, step: "s", message: "bad"))
        let stats = try await store.queueStats("q")
        #expect(stats.deadLetters == 1 && stats.depth == 0 && stats.dead.first?.lastError?.contains("bad") == true)
        #expect(try await store.redrive(queue: "q", ids: [m.id], now: now) == 1)
        #expect(try await store.redrive(queue: "q", ids: [], now: now) == 0)
        #expect(try await store.queueStats("q").depth == 1)
        await #expect(throws: TriggerScheduler.QueueError.self) {
            _ = try await store.enqueue(queue: "q", body: [:], dedupeId: nil, maxDepth: 1, now: now)
        }
    }

    @Test("webhook delivery ids: the first delivery makes the run, a second within the window does not", arguments: Engine.allCases)
    func deliveries(_ engine: Engine) async throws {
        let store = try await engine.store()
        defer { Task { await store.close() } }
        let remember = RunStore.rememberDelivery(triggerId: "wf:hook", deliveryId: "abc", ttl: 60)
        _ = try await store.create(id: "h1", workflow: "wf", input: [:], idempotencyKey: nil, requestHash: "", start: true,
                                   origin: RunOrigin(triggerId: "wf:hook", scheduledAt: nil, record: remember))
        await #expect(throws: FireConflict.self) {
            _ = try await store.create(id: "h2", workflow: "wf", input: [:], idempotencyKey: nil, requestHash: "", start: true,
                                       origin: RunOrigin(triggerId: "wf:hook", scheduledAt: nil, record: remember))
        }
        let seen = try await store.delivery(triggerId: "wf:hook", deliveryId: "abc", now: Date())
        #expect(seen.seen && seen.runId == "h1")
        #expect(try await store.run("h2") == nil)
    }

    @Test("agent sessions: one open per key, closed and reopened, pruned by last use", arguments: Engine.allCases)
    func sessions(_ engine: Engine) async throws {
        let store = try await engine.store()
        defer { Task { await store.close() } }
        let (first, created) = try #require(try await store.recordTurn(agent: "a", key: "k", acpSessionId: "s1", runId: "r1", continued: nil))
        #expect(created && first.turns == 1)
        #expect(try await store.recordTurn(agent: "a", key: "k", acpSessionId: "s2", runId: "r2", continued: nil) == nil)
        let (next, _) = try #require(try await store.recordTurn(agent: "a", key: "k", acpSessionId: "s1", runId: "r3", continued: first.id))
        #expect(next.turns == 2 && next.lastRunId == "r3")
        #expect(try await store.openSession(agent: "a", key: "k")?.id == first.id)
        #expect(try await store.session(first.id)?.createdAt.timeIntervalSince1970.rounded() == first.createdAt.timeIntervalSince1970.rounded())
        #expect(try await store.closeSession(first.id)?.changed == true)
        guard case .reopened = try await store.reopenSession(first.id) else { Issue.record("not reopened"); return }
        #expect(try await store.sessions(agent: "a", state: .open).count == 1)
        #expect(try await store.pruneSessions(before: Date().addingTimeInterval(-60)).isEmpty)
        #expect(try await store.pruneSessions(before: Date().addingTimeInterval(60)).map(\.id) == [first.id])
        #expect(try await store.sessions(state: .closed).count == 1)
    }
}
