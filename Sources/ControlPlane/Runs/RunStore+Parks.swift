import Foundation
import Wire
import Workflow

/// A step a run waits on, other than an approval: a `wait` for an output
/// posted to the API, or an `invoke` for its child run.
public struct WaitRecord: Codable, Sendable, Equatable, StoreRecord {
    public static let databaseTableName = "waits"
    public enum Kind: String, Codable, Sendable { case wait, invoke }
    public enum Status: String, Codable, Sendable, CaseIterable {
        case pending, resolved, expired, failed, cancelled
    }

    public var runId: String
    public var step: String
    public var kind: Kind
    public var childRunId: String?
    public var message: String?
    public var status: Status
    /// A wait's `onTimeout`, from the definition.
    public var onTimeout: WaitStep.OnTimeout?
    public var expiresAt: Double?
    public var createdAt: Double
    public var resolvedAt: Double?

    enum CodingKeys: String, CodingKey {
        case runId = "run_id", step, kind, childRunId = "child_run_id", message, status, onTimeout = "on_timeout"
        case expiresAt = "expires_at", createdAt = "created_at", resolvedAt = "resolved_at"
    }

    public static let primaryKey = ["run_id", "step"]
}

/// What a child run's end did to its parent.
public enum ParentOutcome: Sendable, Equatable {
    /// Nothing else pending: the parent is queued again.
    case ready(parentId: String)
    /// The parent still waits on other steps.
    case waiting(parentId: String)
    /// The child did not succeed: the parent's step failed, and so does the parent.
    case failed(parentId: String, StepFailure)
}

/// A child run an `invoke` step starts.
public struct ChildPlan: Sendable {
    public var id: String
    public var workflow: String
    public var input: JSONValue
    /// The parent's invoke step (path).
    public var step: String
}

extension RunStore {
    /// Parks a run at every step its segment parked at, in one transaction:
    /// the approval rows, the waits, the child runs (queued, linked to their
    /// parent), the run's `waiting` status and the events. Nil when the run is
    /// no longer running (cancelled meanwhile).
    public func park(runId: String, approvals: [ApprovalRecord], waits: [WaitRecord], children: [ChildPlan]) async throws -> [RunEvent]? {
        try await db.write(.untilBack) { db in
            try db.execute(sql: "UPDATE runs SET status = 'waiting' WHERE id = ? AND status = 'running' AND (owner = ? OR owner IS NULL)",
                           arguments: [runId, db.member])
            guard db.changesCount > 0 else { return nil }
            let depth = try Int.fetchOne(db, sql: "SELECT depth FROM runs WHERE id = ?", arguments: [runId]) ?? 0
            var events: [RunEvent] = []
            let now = Date().timeIntervalSince1970
            for approval in approvals {
                try db.execute(sql: """
                    INSERT INTO approvals (id, run_id, workflow, step, message, requester, status, on_timeout, created_at, expires_at)
                    VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)
                    """, arguments: [approval.id, runId, approval.workflow, approval.step, approval.message, approval.requester,
                                     approval.onTimeout, approval.createdAt.timeIntervalSince1970, approval.expiresAt?.timeIntervalSince1970])
                events.append(try Self.append(db, runId: runId, type: .runWaiting, step: approval.step, message: approval.message,
                                              data: ["approval": .string(approval.id)]))
            }
            for wait in waits {
                try wait.insert(db)
                events.append(try Self.append(db, runId: runId, type: .runWaiting, step: wait.step, message: wait.message,
                                              data: ["wait": .bool(true)]))
            }
            for child in children {
                try db.execute(sql: """
                    INSERT INTO runs (id, workflow, status, input, created_at, parent_run_id, parent_step, depth, owner)
                    VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?)
                    """, arguments: [child.id, child.workflow, child.input.jsonText, now, runId, child.step, depth + 1, db.member])
                events.append(try Self.append(db, runId: child.id, type: .runQueued, step: nil, message: child.workflow,
                                              data: ["parent": .string(runId), "parentStep": .string(child.step)]))
                try WaitRecord(runId: runId, step: child.step, kind: .invoke, childRunId: child.id, message: nil, status: .pending,
                               onTimeout: nil, expiresAt: nil, createdAt: now, resolvedAt: nil).insert(db)
                events.append(try Self.append(db, runId: runId, type: .childStarted, step: child.step, message: child.workflow,
                                              data: ["child": .string(child.id), "workflow": .string(child.workflow)]))
                events.append(try Self.append(db, runId: runId, type: .runWaiting, step: child.step, message: "child run \(child.id)",
                                              data: ["child": .string(child.id)]))
            }
            return events
        }
    }

    /// The run goes back to the queue once nothing it parked at is pending.
    /// Returns whether it did.
    /// One that one of them failed (a denial, an expiry, a failed child) is
    /// not: it is ending, whatever else is decided meanwhile.
    @discardableResult
    static func queueIfNothingPending(_ db: any StoreConnection, runId: String) throws -> Bool {
        let blocking = try Int.fetchOne(db, sql: """
            SELECT (SELECT COUNT(*) FROM approvals WHERE run_id = ? AND kind = 'step' AND status IN ('pending', 'denied', 'expired'))
                 + (SELECT COUNT(*) FROM waits WHERE run_id = ? AND status IN ('pending', 'expired', 'failed'))
            """, arguments: [runId, runId]) ?? 0
        guard blocking == 0 else { return false }
        // The gateway that resolved the last of them takes the run on.
        try db.execute(sql: "UPDATE runs SET status = 'queued', owner = ? WHERE id = ? AND status = 'waiting'", arguments: [db.member, runId])
        return db.changesCount > 0
    }

    /// A child run ended: its parent's invoke step takes its output, or fails with it.
    static func resolveParent(_ db: any StoreConnection, child: String, status: RunStatus, output: JSONValue?, error: StepFailure?,
                              into finished: inout Finished) throws {
        guard let wait = try WaitRecord.fetchOne(db, sql: "SELECT * FROM waits WHERE child_run_id = ? AND status = 'pending'",
                                                 arguments: [child]) else { return }
        let now = Date().timeIntervalSince1970
        let parent = wait.runId
        if status == .succeeded {
            try db.execute(sql: "UPDATE waits SET status = 'resolved', resolved_at = ? WHERE run_id = ? AND step = ?",
                           arguments: [now, parent, wait.step])
            finished.parentEvents.append(try append(db, runId: parent, type: .stepFinished, step: wait.step, message: "child run \(child) succeeded",
                                                    data: ["attempt": 1, "output": output ?? .null, "child": .string(child)]))
            finished.parent = try queueIfNothingPending(db, runId: parent) ? .ready(parentId: parent) : .waiting(parentId: parent)
        } else {
            try db.execute(sql: "UPDATE waits SET status = 'failed', resolved_at = ? WHERE run_id = ? AND step = ?",
                           arguments: [now, parent, wait.step])
            let why = error.map { "\($0.code): \($0.message)" } ?? status.rawValue
            let failure = StepFailure(.childFailed, step: wait.step, message: "child run \(child) \(status.rawValue): \(why)",
                                      details: ["child": child, "childCode": error?.code ?? status.rawValue])
            finished.parentEvents.append(try append(db, runId: parent, type: .stepFailed, step: wait.step, message: failure.message,
                                                    data: ["attempt": 1, "code": .string(failure.code), "willRetry": false, "child": .string(child)]))
            finished.parent = .failed(parentId: parent, failure)
        }
    }

    public enum WaitResolution: Sendable {
        /// Resolved; the events, and whether the run is queued again.
        case resolved([RunEvent], queued: Bool)
        /// The run is not waiting on that step (resolved already, or never).
        case notWaiting
    }

    /// A `wait` step's output was posted: it is checkpointed with it, once.
    public func resolveWait(runId: String, step: String, output: JSONValue, actor: String) async throws -> WaitResolution {
        try await db.write { db in
            try db.execute(sql: "UPDATE waits SET status = 'resolved', resolved_at = ? WHERE run_id = ? AND step = ? AND kind = 'wait' AND status = 'pending'",
                           arguments: [Date().timeIntervalSince1970, runId, step])
            guard db.changesCount > 0 else { return .notWaiting }
            let event = try Self.append(db, runId: runId, type: .stepFinished, step: step, message: "resumed by \(actor)",
                                        data: ["attempt": 1, "output": output])
            return .resolved([event], queued: try Self.queueIfNothingPending(db, runId: runId))
        }
    }

    /// A `wait` step's time ran out. `output` set: it resumes with it; nil: the step fails.
    public func expireWait(runId: String, step: String, output: JSONValue?) async throws -> WaitResolution {
        try await db.write { db in
            try db.execute(sql: "UPDATE waits SET status = ?, resolved_at = ? WHERE run_id = ? AND step = ? AND kind = 'wait' AND status = 'pending'",
                           arguments: [output == nil ? "expired" : "resolved", Date().timeIntervalSince1970, runId, step])
            guard db.changesCount > 0 else { return .notWaiting }
            if let output {
                let event = try Self.append(db, runId: runId, type: .stepFinished, step: step, message: "timed out; resumed with timeoutOutput",
                                            data: ["attempt": 1, "output": output])
                return .resolved([event], queued: try Self.queueIfNothingPending(db, runId: runId))
            }
            let event = try Self.append(db, runId: runId, type: .stepFailed, step: step, message: "no output was posted before the timeout",
                                        data: ["attempt": 1, "code": .string(FailureCode.waitExpired.rawValue), "willRetry": false])
            return .resolved([event], queued: false)
        }
    }

    /// A run's pending waits.
    public func pendingWaits(runId: String) async throws -> [WaitRecord] {
        try await db.read { db in
            try WaitRecord.fetchAll(db, sql: "SELECT * FROM waits WHERE status = 'pending' AND run_id = ?", arguments: [runId])
        }
    }

    /// Pending `wait` steps whose time is up.
    public func expiredWaits(now: Date = Date()) async throws -> [WaitRecord] {
        try await db.read { db in
            try WaitRecord.fetchAll(db, sql: """
                SELECT * FROM waits WHERE status = 'pending' AND kind = 'wait' AND expires_at IS NOT NULL AND expires_at <= ?
                """, arguments: [now.timeIntervalSince1970])
        }
    }

    /// A run that ends while parked closes what it waits on, in the
    /// transaction that ends it: its approvals and waits are cancelled. Returns
    /// its children that have not ended, for the caller to cancel in turn.
    static func closeParks(_ db: any StoreConnection, runId: String) throws -> [String] {
            let now = Date().timeIntervalSince1970
            try db.execute(sql: "UPDATE approvals SET status = 'cancelled', decided_at = ? WHERE run_id = ? AND status = 'pending'",
                           arguments: [now, runId])
            try db.execute(sql: "UPDATE waits SET status = 'cancelled', resolved_at = ? WHERE run_id = ? AND status = 'pending'",
                           arguments: [now, runId])
            return try String.fetchAll(db, sql: """
                SELECT id FROM runs WHERE parent_run_id = ? AND status IN ('queued', 'running', 'waiting') ORDER BY created_at
                """, arguments: [runId])
    }

    /// `waiting` → `queued`, when nothing it parked at is pending or failed.
    public func requeue(runId: String) async throws -> Bool {
        try await db.write { db in try Self.queueIfNothingPending(db, runId: runId) }
    }

    /// Runs a crash left waiting on nothing: a resolution committed, the run's
    /// end or its next segment did not. With the step that failed, if one did.
    public func stalledWaiting() async throws -> [(runId: String, failed: StepFailure?)] {
        try await db.read { db in
            try StoreRow.fetchAll(db, sql: """
                SELECT r.id,
                       (SELECT step FROM approvals a WHERE a.run_id = r.id AND a.kind = 'step' AND a.status IN ('denied', 'expired') ORDER BY step LIMIT 1) AS approval_step,
                       (SELECT status FROM approvals a WHERE a.run_id = r.id AND a.kind = 'step' AND a.status IN ('denied', 'expired') ORDER BY step LIMIT 1) AS approval_status,
                       (SELECT step FROM waits w WHERE w.run_id = r.id AND w.status IN ('expired', 'failed') ORDER BY step LIMIT 1) AS wait_step,
                       (SELECT status FROM waits w WHERE w.run_id = r.id AND w.status IN ('expired', 'failed') ORDER BY step LIMIT 1) AS wait_status
                FROM runs r
                WHERE r.status = 'waiting'
                  AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.run_id = r.id AND a.kind = 'step' AND a.status = 'pending')
                  AND NOT EXISTS (SELECT 1 FROM waits w WHERE w.run_id = r.id AND w.status = 'pending')
                """).map { row in
                let codes: [String: FailureCode] = ["denied": .approvalDenied, "expired": .approvalExpired]
                var failure: StepFailure?
                if let step: String = row["approval_step"], let status: String = row["approval_status"] {
                    failure = StepFailure(codes[status] ?? .approvalDenied, step: step, message: "\(step) was \(status) before the gateway stopped")
                } else if let step: String = row["wait_step"], let status: String = row["wait_status"] {
                    failure = StepFailure(status == "expired" ? .waitExpired : .childFailed, step: step, message: "\(step) \(status) before the gateway stopped")
                }
                return (runId: row["id"], failed: failure)
            }
        }
    }

    /// Child runs still waiting whose parent has ended (its end and the
    /// cancelling of its children are two steps a crash can come between).
    public func orphanedChildren() async throws -> [String] {
        try await db.read { db in
            try String.fetchAll(db, sql: """
                SELECT c.id FROM runs c JOIN runs p ON p.id = c.parent_run_id
                WHERE c.status IN ('queued', 'running', 'waiting') AND p.status IN ('succeeded', 'failed', 'cancelled')
                """)
        }
    }

    static func fetchChildren(_ db: any StoreConnection, runId: String) throws -> [ChildRun] {
        try StoreRow.fetchAll(db, sql: "SELECT id, parent_step, workflow, status FROM runs WHERE parent_run_id = ? ORDER BY created_at, id",
                         arguments: [runId]).map {
            ChildRun(id: $0["id"], step: $0["parent_step"], workflow: $0["workflow"], status: RunStatus(rawValue: $0["status"]) ?? .failed)
        }
    }
}
