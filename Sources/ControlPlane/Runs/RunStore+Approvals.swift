import Foundation
import Wire
import Workflow

/// Approvals: a durable request for a decision, decided once.
extension RunStore {
    public enum Decision: Sendable {
        /// `queued`: nothing else the run parked at is pending; it goes on.
        case decided(ApprovalRecord, [RunEvent], queued: Bool)
        case alreadyDecided(ApprovalRecord)
        case notFound
    }

    /// Records a decision once. Approve checkpoints the step with its output and
    /// queues the run again once nothing else it parked at is pending; deny
    /// (and expiry) record the step as failed.
    public func decide(id: String, status: ApprovalRecord.Status, actor: String, reason: String?) async throws -> Decision {
        try await db.write { db in
            guard let row = try StoreRow.fetchOne(db, sql: "SELECT * FROM approvals WHERE id = ?", arguments: [id]) else { return .notFound }
            let current = Self.approval(from: row)
            guard current.status == .pending else { return .alreadyDecided(current) }
            let now = Date()
            try db.execute(sql: "UPDATE approvals SET status = ?, decided_at = ?, decided_by = ?, reason = ? WHERE id = ?",
                           arguments: [status.rawValue, now.timeIntervalSince1970, actor, reason, id])
            var decided = current
            decided.status = status
            decided.decidedAt = now
            decided.decidedBy = actor
            decided.reason = reason
            // A permission request ends no step: the agent that asked hears the answer.
            if current.kind == .permission { return .decided(decided, [], queued: false) }
            var events: [RunEvent] = []
            var queued = false
            let approved = status == .approved
            let output: JSONValue = ["approved": .bool(approved), "actor": .string(actor), "reason": reason.map(JSONValue.string) ?? .null]
            if approved {
                events.append(try Self.append(db, runId: current.runId, type: .stepFinished, step: current.step, message: "approved by \(actor)",
                                              data: ["attempt": 1, "output": output]))
                queued = try Self.queueIfNothingPending(db, runId: current.runId)
            } else {
                events.append(try Self.append(db, runId: current.runId, type: .stepFailed, step: current.step,
                                              message: "\(status.rawValue) by \(actor)\(reason.map { ": \($0)" } ?? "")",
                                              data: ["attempt": 1, "code": .string((status == .expired ? FailureCode.approvalExpired : .approvalDenied).rawValue), "willRetry": false]))
            }
            return .decided(decided, events, queued: queued)
        }
    }

    public func approval(_ id: String) async throws -> ApprovalRecord? {
        try await db.read { db in try StoreRow.fetchOne(db, sql: "SELECT * FROM approvals WHERE id = ?", arguments: [id]).map(Self.approval(from:)) }
    }

    public func approvals(status: ApprovalRecord.Status? = nil, runId: String? = nil, limit: Int = 100) async throws -> [ApprovalRecord] {
        try await db.read { db in
            var sql = "SELECT * FROM approvals WHERE 1 = 1"
            var args: [any StoreValueConvertible] = []
            if let status { sql += " AND status = ?"; args.append(status.rawValue) }
            if let runId { sql += " AND run_id = ?"; args.append(runId) }
            sql += " ORDER BY created_at DESC LIMIT ?"
            args.append(limit)
            return try StoreRow.fetchAll(db, sql: sql, arguments: StoreArguments(args)).map(Self.approval(from:))
        }
    }

    /// Pending approvals whose time is up.
    public func expiredApprovals(now: Date = Date()) async throws -> [ApprovalRecord] {
        try await db.read { db in
            try StoreRow.fetchAll(db, sql: "SELECT * FROM approvals WHERE status = 'pending' AND expires_at IS NOT NULL AND expires_at <= ?",
                             arguments: [now.timeIntervalSince1970]).map(Self.approval(from:))
        }
    }

    static func approval(from row: StoreRow) -> ApprovalRecord {
        ApprovalRecord(id: row["id"], runId: row["run_id"], workflow: row["workflow"], step: row["step"], message: row["message"],
                       requester: row["requester"], status: ApprovalRecord.Status(rawValue: row["status"]) ?? .pending,
                       onTimeout: row["on_timeout"], createdAt: Date(timeIntervalSince1970: row["created_at"]),
                       expiresAt: (row["expires_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                       decidedAt: (row["decided_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                       decidedBy: row["decided_by"], reason: row["reason"],
                       kind: ApprovalRecord.Kind(rawValue: row["kind"] ?? "step") ?? .step)
    }

    /// An agent's permission request as a pending approval, with the
    /// `agent.request` event that says so (the run does not wait: its step does).
    public func askPermission(_ a: ApprovalRecord, method: String) async throws -> RunEvent {
        try await db.write { db in
            try db.execute(sql: """
                INSERT INTO approvals (id, run_id, workflow, step, message, requester, status, on_timeout, created_at, expires_at, kind)
                VALUES (?, ?, ?, ?, ?, ?, 'pending', 'deny', ?, ?, 'permission')
                """, arguments: [a.id, a.runId, a.workflow, a.step, a.message, a.requester, a.createdAt.timeIntervalSince1970,
                                 a.expiresAt?.timeIntervalSince1970])
            return try Self.append(db, runId: a.runId, type: .agentRequest, step: a.step, message: a.message,
                                   data: ["method": .string(method), "outcome": "asked", "approval": .string(a.id)])
        }
    }
}
