import Foundation
import Workflow

/// What operators do to triggers: look, fire by hand, pause and unpause, and
/// add or remove schedules of their own.
extension TriggerScheduler {
    public func list() async -> [TriggerView] {
        armed.keys.sorted().compactMap { view($0, upcoming: 0) }
    }

    public func view(_ id: String, upcoming count: Int = 5) -> TriggerView? {
        guard let a = armed[id] else { return nil }
        var upcoming: [Date] = []
        if a.live, count > 0, let schedule = a.schedule {
            let from = max(clock.now(), Date(timeIntervalSince1970: a.row.lastSlotAt ?? a.row.armedAt))
            upcoming = schedule.upcoming(after: from, count: count)
        }
        var v = TriggerView(a, inflight: inflight[id]?.count ?? 0, queueDepth: buffered[id] ?? 0, upcoming: upcoming)
        if case .fileWatch = a.trigger.kind { v.watching = watchers[id] != nil }
        return v
    }

    public enum ControlError: Error, Sendable {
        case notFound(String)
        case conflict(String)
        case invalid(String)
    }

    /// A fire by hand, of any kind (an event kind's run gets the input given,
    /// or the trigger's): through the overlap policy unless `policy` overrides it.
    public func fire(_ id: String, input: JSONValue?, policy: OverlapPolicy?, actor: String) async throws -> FireOutcome {
        guard let a = armed[id] else { throw ControlError.notFound("no trigger \(id)") }
        if let why = a.row.disarmedReason { throw ControlError.conflict("trigger \(id) is disarmed: \(why)") }
        if a.row.paused { throw ControlError.conflict("trigger \(id) is paused\(a.row.pauseNote.map { ": \($0)" } ?? ""); unpause it first") }
        if let pause = admission.paused { throw RunService.SubmitError.paused(pause) }
        audit.record(actor: actor, action: "trigger.fire", details: ["trigger": id, "workflow": a.row.workflow])
        return await offer(id, slot: nil, input: input ?? a.trigger.input ?? .object([:]), reason: "fired by \(actor)", policy: policy)
    }

    /// Paused: no fire at all (time slots that pass are skipped at unpause, which realigns to the next slot).
    public func setPaused(_ id: String, _ paused: Bool, note: String?, actor: String) async throws -> TriggerView {
        guard armed[id] != nil else { throw ControlError.notFound("no trigger \(id)") }
        let now = clock.now()
        guard let row = try await store.setPaused(id, paused: paused, note: note, by: actor, now: now) else { throw ControlError.notFound("no trigger \(id)") }
        armed[id]?.row.paused = row.paused
        armed[id]?.row.pauseNote = row.pauseNote
        armed[id]?.row.pausedBy = row.pausedBy
        armed[id]?.row.pausedAt = row.pausedAt
        if !paused, let a = armed[id], let schedule = a.schedule {
            // Realign: slots that passed while paused are not caught up. In
            // memory first, before anything awaits: the scheduler's loop runs
            // at every await of this actor, and must never see the trigger
            // unpaused with the slots it missed still due.
            let next = schedule.slot(after: now).map(schedule.fireTime(of:))
            self.note(id, lastSlot: now, next: next)
            try await store.account(id, lastSlot: now, next: next, clearNext: next == nil)
        }
        var details = ["trigger": id]
        if let note { details["note"] = note }
        audit.record(actor: actor, action: (paused ? TriggerAuditAction.paused : .unpaused).rawValue, details: details)
        try await rebuild()
        signal.wake()
        // Removed meanwhile (a DELETE that came between): as if it had never been there.
        guard let view = view(id) else { throw ControlError.notFound("no trigger \(id)") }
        return view
    }

    /// An operator's schedule (cron, every or at) on a valid workflow; kept until deleted.
    public func addSchedule(workflow: String, trigger: Trigger, actor: String) async throws -> TriggerView {
        guard trigger.kind.isTimeBased || trigger.kind == .manual else {
            throw ControlError.invalid("a schedule is a cron, every or at trigger (declare event triggers in the workflow file)")
        }
        guard await registry.workflow(workflow) != nil else { throw ControlError.notFound("no valid workflow named \(workflow)") }
        let id = "sch_" + RandomID.hex("").prefix(16)
        let spec = RunStore.specJSON(trigger)
        let t = clock.now().timeIntervalSince1970
        let row = TriggerRow(id: String(id), workflow: workflow, kind: trigger.kind.name, source: .operator, spec: spec.json, specHash: spec.hash,
                             armedAt: t, paused: false, disarmedReason: nil, fired: 0, skipped: 0, dropped: 0, createdBy: actor,
                             createdAt: t, updatedAt: t)
        try await store.insertSchedule(row)
        audit.record(actor: actor, action: TriggerAuditAction.scheduleAdded.rawValue, details: [
            "trigger": row.id, "workflow": workflow, "kind": trigger.kind.name.rawValue,
        ])
        try await rebuild()
        signal.wake()
        guard let view = view(row.id) else { throw ControlError.notFound("schedule \(row.id) was removed as it was added") }
        return view
    }

    public func removeSchedule(_ id: String, actor: String) async throws {
        guard let a = armed[id] else { throw ControlError.notFound("no schedule \(id)") }
        guard a.row.source == .operator else {
            throw ControlError.conflict("\(id) is declared in workflow \(a.row.workflow)'s file; remove it there (or pause it)")
        }
        guard try await store.deleteSchedule(id) else { throw ControlError.notFound("no schedule \(id)") }
        buffered[id] = nil
        audit.record(actor: actor, action: TriggerAuditAction.scheduleRemoved.rawValue, details: ["trigger": id, "workflow": a.row.workflow])
        try await rebuild()
    }
}

/// A trigger as `GET /triggers` shows it. Never a secret: a webhook's
/// signature shows its scheme and the secret's name only.
public struct TriggerView: Encodable, Sendable {
    public enum State: String, Encodable, Sendable {
        case armed, paused, disarmed
        /// A one-shot `at` that has fired (or was missed).
        case done
    }

    public var id: String
    public var workflow: String
    public var kind: TriggerKind.Name
    public var source: TriggerSource
    public var state: State
    public var disarmedReason: String?
    public var pauseNote: String?
    public var pausedBy: String?
    public var pausedAt: Date?
    /// As a workflow's `triggers:` entry would say it.
    var spec: TriggerSpecView
    public var fired: Int
    public var skipped: Int
    public var dropped: Int
    public var inflight: Int
    public var queueDepth: Int
    public var lastFiredAt: Date?
    public var nextFireAt: Date?
    public var lastOutcome: String?
    public var lastError: String?
    public var createdBy: String?
    public var createdAt: Date
    /// The next fire times (time-based kinds), so an expression can be checked before it is trusted.
    public var upcoming: [Date]?
    /// A file-watch trigger: whether its inotify watch is in place.
    public var watching: Bool?

    init(_ a: TriggerScheduler.Armed, inflight: Int, queueDepth: Int, upcoming: [Date]) {
        id = a.row.id
        workflow = a.row.workflow
        kind = a.row.kind
        source = a.row.source
        if a.row.disarmedReason != nil {
            state = .disarmed
        } else if a.row.paused {
            state = .paused
        } else if case .at = a.trigger.kind, a.row.nextFireAt == nil, a.row.lastSlotAt != nil {
            state = .done
        } else {
            state = .armed
        }
        disarmedReason = a.row.disarmedReason
        pauseNote = a.row.pauseNote
        pausedBy = a.row.pausedBy
        pausedAt = a.row.pausedAt.map(Date.init(timeIntervalSince1970:))
        spec = TriggerSpecView(trigger: a.trigger)
        fired = a.row.fired
        skipped = a.row.skipped
        dropped = a.row.dropped
        self.inflight = inflight
        self.queueDepth = queueDepth
        lastFiredAt = a.row.lastFiredAt.map(Date.init(timeIntervalSince1970:))
        nextFireAt = state == .armed ? a.row.nextFireAt.map(Date.init(timeIntervalSince1970:)) : nil
        lastOutcome = a.row.lastOutcome
        lastError = a.row.lastError
        createdBy = a.row.createdBy
        createdAt = Date(timeIntervalSince1970: a.row.createdAt)
        self.upcoming = a.schedule == nil ? nil : upcoming
    }
}
