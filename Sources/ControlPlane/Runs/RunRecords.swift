import Foundation
import Wire
import Workflow

public enum RunStatus: String, Codable, Sendable, CaseIterable {
    /// `waiting`: parked (at approvals, waits or child runs); no worker holds it.
    case queued, running, waiting, succeeded, failed, cancelled
    public var isTerminal: Bool { self == .succeeded || self == .failed || self == .cancelled }
}

/// A run as `GET /runs/:id` shows it.
public struct RunRecord: Codable, Sendable {
    public var id: String
    public var workflow: String
    public var status: RunStatus
    public var input: JSONValue
    public var output: JSONValue?
    public var error: StepFailure?
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    public var durationMs: Double?
    public var idempotencyKey: String?
    /// Seq of the last persisted event: `GET /runs/:id/events?since=` starts here.
    public var lastSeq: Int
    /// Worker segments this run has used (more than one after a restart or resume).
    public var segments: Int
    /// Set on a child run: the run whose `invoke` step started it, and that step's path.
    public var parentRunId: String?
    public var parentStep: String?
    /// How many `invoke`s deep: 0 for a run started over the API.
    public var depth: Int = 0
    /// The trigger that fired it, and the slot it was fired for (time-based triggers).
    public var trigger: String?
    public var scheduledAt: Date?
    /// The gateway that holds it (runs it, or last did): its `server.gatewayId`;
    /// `local` on a gateway alone on its SQLite store that names none.
    public var gateway: String?
    public var steps: [StepRecord]?
    /// The runs its `invoke` steps started (with its steps only).
    public var children: [ChildRun]?
}

/// A child run as its parent shows it.
public struct ChildRun: Codable, Sendable, Equatable {
    public var id: String
    public var step: String
    public var workflow: String
    public var status: RunStatus
}

/// One step's checkpoint: its latest attempt.
public struct StepRecord: Codable, Sendable {
    public var path: String
    public var status: StepStatus
    public var attempt: Int
    public var output: JSONValue?
    public var error: String?
    public var startedAt: Date?
    public var finishedAt: Date?
    public var durationMs: Double?
}

/// One persisted event of a run. `seq` counts from 1 per run with no gaps: it is
/// the SSE `id:`, so a reconnect with `Last-Event-ID` resumes exactly.
public struct RunEvent: Codable, Sendable {
    public var runId: String
    public var seq: Int
    public var type: String
    public var step: String?
    public var message: String?
    public var data: JSONValue?
    public var at: Date

    public var isTerminal: Bool { RunEventType(rawValue: type)?.isTerminal ?? false }
}

/// A durable request for a human decision.
public struct ApprovalRecord: Codable, Sendable {
    public enum Status: String, Codable, Sendable, CaseIterable { case pending, approved, denied, expired, cancelled }
    public var id: String
    public var runId: String
    public var workflow: String
    public var step: String
    public var message: String
    public var requester: String
    public var status: Status
    public var onTimeout: String
    public var createdAt: Date
    public var expiresAt: Date?
    public var decidedAt: Date?
    public var decidedBy: String?
    public var reason: String?
    /// What is asked: an `approval` step's go-ahead (the run waits, parked), or
    /// an agent's permission request (the agent waits, in its worker).
    public enum Kind: String, Codable, Sendable, CaseIterable { case step, permission }
    public var kind: Kind = .step
}
