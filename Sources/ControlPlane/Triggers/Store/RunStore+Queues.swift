import Foundation
import Workflow

/// Durable queues and webhook delivery ids. A message is taken in the
/// transaction that creates its run, and settled in the one that ends it
/// (`TriggerSchema.runEnded`): at least once, never silently lost.
extension RunStore {
    public enum Enqueued: Sendable {
        case added(QueueMessage)
        /// A message with this dedupe id is still known: it is returned instead.
        case duplicate(QueueMessage)
    }

    func enqueue(queue: String, body: JSONValue, dedupeId: String?, maxDepth: Int, now: Date) async throws -> Enqueued {
        try await db.write { db in
            if let dedupeId, let existing = try QueueMessage.fetchOne(db, sql: "SELECT * FROM queue_messages WHERE queue = ? AND dedupe_id = ?",
                                                                      arguments: [queue, dedupeId]) {
                return .duplicate(existing)
            }
            let waiting = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM queue_messages WHERE queue = ? AND status IN ('ready', 'inflight')",
                                           arguments: [queue]) ?? 0
            guard waiting < maxDepth else { throw TriggerScheduler.QueueError.full(maxDepth) }
            let t = now.timeIntervalSince1970
            let message = QueueMessage(id: RandomID.hex("msg_"), queue: queue,
                                       body: body.jsonText, dedupeId: dedupeId, status: .ready, attempts: 0, maxAttempts: 3,
                                       visibleAt: t, runId: nil, lastError: nil, createdAt: t, updatedAt: t)
            try message.insert(db)
            return .added(message)
        }
    }

    /// Messages a run may take now, oldest first: ready ones whose backoff has
    /// passed, and taken ones whose run outlived the visibility timeout.
    func takeable(queue: String, limit: Int, now: Date) async throws -> [QueueMessage] {
        try await db.read { db in
            // A taken message whose run is parked (waiting for an approval or a posted
            // output) is not taken again: its run is alive, just waiting.
            try QueueMessage.fetchAll(db, sql: """
                SELECT * FROM queue_messages WHERE queue = ? AND status IN ('ready', 'inflight') AND visible_at <= ?
                AND NOT (status = 'inflight' AND EXISTS (SELECT 1 FROM runs WHERE runs.id = queue_messages.run_id AND runs.status = 'waiting'))
                ORDER BY visible_at, created_at LIMIT ?
                """, arguments: [queue, now.timeIntervalSince1970, limit])
        }
    }

    /// The part of a run's creation that takes `message`: only if nobody took it meanwhile.
    static func takeMessage(_ message: QueueMessage, maxAttempts: Int, visibility: Int, now date: Date) -> @Sendable (any StoreConnection, String) throws -> Void {
        { db, runId in
            let now = date.timeIntervalSince1970
            try db.execute(sql: """
                UPDATE queue_messages SET status = 'inflight', attempts = attempts + 1, max_attempts = ?, run_id = ?, visible_at = ?, updated_at = ?
                WHERE id = ? AND status = ? AND visible_at <= ? AND COALESCE(run_id, '') = ?
                """, arguments: [maxAttempts, runId, now + Double(visibility), now, message.id, message.status.rawValue, now, message.runId ?? ""])
            guard db.changesCount == 1 else { throw FireConflict() }
        }
    }

    public struct QueueStats: Codable, Sendable {
        public var name: String
        /// Ready (including those waiting out a retry backoff).
        public var depth: Int
        public var inflight: Int
        public var deadLetters: Int
        public var done: Int
        public var oldestReadyAt: Date?
        public var dead: [QueueMessageView]
    }

    func queueStats(_ queue: String, deadLimit: Int = 50) async throws -> QueueStats {
        try await db.read { db in
            var counts: [String: Int] = [:]
            for row in try StoreRow.fetchAll(db, sql: "SELECT status, COUNT(*) AS n FROM queue_messages WHERE queue = ? GROUP BY status", arguments: [queue]) {
                counts[row["status"]] = row["n"]
            }
            let oldest = try Double.fetchOne(db, sql: "SELECT MIN(created_at) FROM queue_messages WHERE queue = ? AND status = 'ready'", arguments: [queue])
            let dead = try QueueMessage.fetchAll(db, sql: "SELECT * FROM queue_messages WHERE queue = ? AND status = 'dead' ORDER BY created_at, id LIMIT ?",
                                                 arguments: [queue, deadLimit])
            return QueueStats(name: queue, depth: counts["ready"] ?? 0, inflight: counts["inflight"] ?? 0, deadLetters: counts["dead"] ?? 0,
                              done: counts["done"] ?? 0, oldestReadyAt: oldest.map(Date.init(timeIntervalSince1970:)), dead: dead.map(QueueMessageView.init))
        }
    }

    /// Dead letters offered again with fresh attempts; `ids` nil: all of them.
    func redrive(queue: String, ids: [String]?, now: Date) async throws -> Int {
        try await db.write { db in
            var sql = "UPDATE queue_messages SET status = 'ready', attempts = 0, visible_at = ?, run_id = NULL, updated_at = ? WHERE queue = ? AND status = 'dead'"
            var args: [any StoreValueConvertible] = [now.timeIntervalSince1970, now.timeIntervalSince1970, queue]
            if let ids {
                guard !ids.isEmpty else { return 0 }
                sql += " AND id IN (\(ids.map { _ in "?" }.joined(separator: ", ")))"
                args += ids as [any StoreValueConvertible]
            }
            try db.execute(sql: sql, arguments: StoreArguments(args))
            return db.changesCount
        }
    }

    func deadLetter(_ id: String, error: String) async throws {
        try await db.write { db in
            try db.execute(sql: "UPDATE queue_messages SET status = 'dead', last_error = ?, updated_at = ? WHERE id = ? AND status IN ('ready', 'inflight')",
                           arguments: [error, Date().timeIntervalSince1970, id])
        }
    }

    /// Not offered again before `until` (a fire that failed for a reason that may pass).
    func postpone(_ id: String, until: Date) async throws {
        try await db.write { db in
            try db.execute(sql: "UPDATE queue_messages SET visible_at = ?, updated_at = ? WHERE id = ? AND status IN ('ready', 'inflight')",
                           arguments: [until.timeIntervalSince1970, Date().timeIntervalSince1970, id])
        }
    }

    /// Done messages older than a day: their dedupe ids are forgotten.
    func purgeDone(before: Date) async throws {
        try await db.write { db in
            try db.execute(sql: "DELETE FROM queue_messages WHERE status = 'done' AND updated_at < ?", arguments: [before.timeIntervalSince1970])
            try db.execute(sql: "DELETE FROM webhook_deliveries WHERE expires_at < ?", arguments: [before.timeIntervalSince1970])
        }
    }

    // MARK: Webhook deliveries

    /// The run an earlier delivery with this id made, while it is remembered.
    func delivery(triggerId: String, deliveryId: String, now: Date) async throws -> (seen: Bool, runId: String?) {
        try await db.read { db in
            guard let d = try WebhookDelivery.fetchOne(db, sql: "SELECT * FROM webhook_deliveries WHERE trigger_id = ? AND delivery_id = ? AND expires_at > ?",
                                                       arguments: [triggerId, deliveryId, now.timeIntervalSince1970]) else { return (false, nil) }
            return (true, d.runId)
        }
    }

    static func rememberDelivery(triggerId: String, deliveryId: String, ttl: Int) -> @Sendable (any StoreConnection, String) throws -> Void {
        { db, runId in
            let now = Date().timeIntervalSince1970
            // An expired row for the same id is replaced; a live one means another delivery got here first.
            try db.execute(sql: "DELETE FROM webhook_deliveries WHERE trigger_id = ? AND delivery_id = ? AND expires_at <= ?",
                           arguments: [triggerId, deliveryId, now])
            // DO NOTHING rather than catching the violation: on PostgreSQL an
            // error ends the transaction it happens in.
            try db.execute(sql: """
                INSERT INTO webhook_deliveries (trigger_id, delivery_id, run_id, expires_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (trigger_id, delivery_id) DO NOTHING
                """, arguments: [triggerId, deliveryId, runId.isEmpty ? nil : runId, now + Double(ttl)])
            guard db.changesCount == 1 else { throw FireConflict() }
        }
    }
}

/// A queue message as the API shows it.
public struct QueueMessageView: Codable, Sendable {
    public var id: String
    public var body: JSONValue
    public var dedupeId: String?
    public var status: QueueMessage.Status
    public var attempts: Int
    public var runId: String?
    public var lastError: String?
    public var createdAt: Date

    init(_ m: QueueMessage) {
        id = m.id
        body = JSONValue.parse(m.body) ?? .null
        dedupeId = m.dedupeId
        status = m.status
        attempts = m.attempts
        runId = m.runId
        lastError = m.lastError
        createdAt = Date(timeIntervalSince1970: m.createdAt)
    }
}
