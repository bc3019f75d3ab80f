import Foundation
import Workflow

/// Where a trigger comes from: a workflow file's `triggers:` (re-synced on
/// every reload) or an operator's `POST /schedules` (kept until deleted).
public enum TriggerSource: String, Codable, Sendable, CaseIterable {
    case declared, `operator`
}

/// A trigger as the store keeps it: its spec, and the state a restart must not lose.
public struct TriggerRow: Codable, Sendable, Equatable, StoreRecord {
    public static let databaseTableName = "triggers"

    public var id: String
    public var workflow: String
    public var kind: TriggerKind.Name
    public var source: TriggerSource
    /// The `Trigger` as JSON, and its hash: a reload that changes it re-arms it.
    public var spec: String
    public var specHash: String
    /// When it was (re-)armed: intervals count their slots from here.
    public var armedAt: Double
    public var paused: Bool
    public var pauseNote: String?
    public var pausedBy: String?
    public var pausedAt: Double?
    /// Set while it cannot fire (its workflow is invalid or gone, its definition removed).
    public var disarmedReason: String?
    public var nextFireAt: Double?
    /// The last slot accounted for (fired, skipped, dropped or buffered): no slot is seen twice.
    public var lastSlotAt: Double?
    public var lastFiredAt: Double?
    public var fired: Int
    public var skipped: Int
    public var dropped: Int
    public var lastOutcome: String?
    public var lastError: String?
    /// A poll trigger's last key (its baseline).
    public var pollKey: String?
    public var createdBy: String?
    public var createdAt: Double
    public var updatedAt: Double

    enum CodingKeys: String, CodingKey {
        case id, workflow, kind, source, spec, specHash = "spec_hash", armedAt = "armed_at", paused, pauseNote = "pause_note"
        case pausedBy = "paused_by", pausedAt = "paused_at", disarmedReason = "disarmed_reason", nextFireAt = "next_fire_at"
        case lastSlotAt = "last_slot_at", lastFiredAt = "last_fired_at", fired, skipped, dropped, lastOutcome = "last_outcome"
        case lastError = "last_error", pollKey = "poll_key", createdBy = "created_by", createdAt = "created_at", updatedAt = "updated_at"
    }


    /// The spec, read as `RunStore.specJSON` wrote it (dates in Unix seconds).
    public var trigger: Trigger? {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        return try? decoder.decode(Trigger.self, from: Data(spec.utf8))
    }
}

/// A fire waiting for the trigger's running run to end (`buffer_one`,
/// `buffer_all`), or a missed or back-filled slot waiting its turn.
public struct BufferedFire: Codable, Sendable, Equatable, StoreRecord {
    public static let databaseTableName = "trigger_buffer"
    public static let primaryKey = ["trigger_id", "seq"]
    public var triggerId: String
    public var seq: Int
    public var slot: Double?
    public var input: String
    public var reason: String
    public var createdAt: Double

    enum CodingKeys: String, CodingKey {
        case triggerId = "trigger_id", seq, slot, input, reason, createdAt = "created_at"
    }

}

/// One message of a durable queue.
public struct QueueMessage: Codable, Sendable, Equatable, StoreRecord {
    public static let databaseTableName = "queue_messages"
    public enum Status: String, Codable, Sendable, CaseIterable {
        /// Waiting for a run (once `visibleAt` has passed).
        case ready
        /// A run is working on it; offered again if that run has not ended by `visibleAt`.
        case inflight
        /// Its runs failed `maxAttempts` times (or one was cancelled): kept until redriven.
        case dead
        /// Its run succeeded; kept a day so its dedupe id still deduplicates.
        case done
    }

    public var id: String
    public var queue: String
    public var body: String
    public var dedupeId: String?
    public var status: Status
    public var attempts: Int
    public var maxAttempts: Int
    public var visibleAt: Double
    public var runId: String?
    public var lastError: String?
    public var createdAt: Double
    public var updatedAt: Double

    enum CodingKeys: String, CodingKey {
        case id, queue, body, dedupeId = "dedupe_id", status, attempts, maxAttempts = "max_attempts", visibleAt = "visible_at"
        case runId = "run_id", lastError = "last_error", createdAt = "created_at", updatedAt = "updated_at"
    }

}

/// A webhook delivery id seen (and the run it made), remembered until `expiresAt`.
struct WebhookDelivery: Codable, Sendable, StoreRecord {
    static let databaseTableName = "webhook_deliveries"
    static let primaryKey = ["trigger_id", "delivery_id"]
    var triggerId: String
    var deliveryId: String
    var runId: String?
    var expiresAt: Double

    enum CodingKeys: String, CodingKey {
        case triggerId = "trigger_id", deliveryId = "delivery_id", runId = "run_id", expiresAt = "expires_at"
    }
}

/// What a fire writes in the transaction that creates its run. Throwing
/// (`FireConflict`) rolls the run back with it.
public struct RunOrigin: Sendable {
    public var triggerId: String
    public var scheduledAt: Date?
    let record: @Sendable (any StoreConnection, _ runId: String) throws -> Void
}

/// The state a fire expected was changed by another (the slot was already
/// accounted for, the message was already taken): the fire made no run.
struct FireConflict: Error {}
