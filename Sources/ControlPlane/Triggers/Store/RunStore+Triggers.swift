import Crypto
import Foundation
import Workflow

/// Triggers and their fire state, in the run store: a fire commits with the
/// run it creates, and everything a restart needs (the last slot, the buffer,
/// the counters) is here rather than in memory.
extension RunStore {
    public func triggers() async throws -> [TriggerRow] {
        try await db.read { db in try TriggerRow.fetchAll(db, sql: "SELECT * FROM triggers ORDER BY id") }
    }

    static func specJSON(_ trigger: Trigger) -> (json: String, hash: String) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        encoder.dateEncodingStrategy = .secondsSince1970
        let data = (try? encoder.encode(trigger)) ?? Data()
        return (String(decoding: data, as: UTF8.self), SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined())
    }

    public enum SyncOutcome: Equatable, Sendable {
        case added, changed, unchanged, rearmed
        case disarmed(String)
    }

    /// A declared trigger as its workflow file says it now, and why it cannot fire, if it cannot.
    struct DeclaredTrigger: Sendable {
        var id: String
        var workflow: String
        var trigger: Trigger
        var disarmedReason: String?
    }

    /// One transaction for a whole reload. A declared trigger that changed is
    /// re-armed from now (its counters kept, its buffer dropped); one that did
    /// not is untouched, keeping its slot, buffer and pause. Every other row
    /// (removed declarations, operator schedules) gets the reason in `others`
    /// (nil: armed). Returns what changed.
    func applySync(declared: [DeclaredTrigger], others: [String: String?], now: Date) async throws -> [String: SyncOutcome] {
        let specs = declared.map { Self.specJSON($0.trigger) }
        return try await db.write { db in
            let t = now.timeIntervalSince1970
            var out: [String: SyncOutcome] = [:]
            func settle(_ row: inout TriggerRow, reason: String?, id: String) {
                if row.disarmedReason != reason {
                    out[id] = reason.map(SyncOutcome.disarmed) ?? .rearmed
                    row.disarmedReason = reason
                    if reason != nil { row.nextFireAt = nil }
                }
            }
            for (d, spec) in zip(declared, specs) {
                guard var row = try TriggerRow.fetchOne(db, key: d.id) else {
                    try TriggerRow(id: d.id, workflow: d.workflow, kind: d.trigger.kind.name, source: .declared, spec: spec.json,
                                   specHash: spec.hash, armedAt: t, paused: false, disarmedReason: d.disarmedReason, fired: 0, skipped: 0,
                                   dropped: 0, createdAt: t, updatedAt: t).insert(db)
                    out[d.id] = d.disarmedReason.map(SyncOutcome.disarmed) ?? .added
                    continue
                }
                if row.specHash != spec.hash {
                    row.spec = spec.json
                    row.specHash = spec.hash
                    row.kind = d.trigger.kind.name
                    row.armedAt = t
                    row.nextFireAt = nil
                    row.lastSlotAt = nil
                    row.pollKey = nil
                    row.disarmedReason = d.disarmedReason
                    try db.execute(sql: "DELETE FROM trigger_buffer WHERE trigger_id = ?", arguments: [d.id])
                    out[d.id] = d.disarmedReason.map(SyncOutcome.disarmed) ?? .changed
                } else {
                    settle(&row, reason: d.disarmedReason, id: d.id)
                }
                if row.source != .declared { row.source = .declared }
                if out[d.id] != nil {
                    row.updatedAt = t
                    try row.update(db)
                }
            }
            for (id, reason) in others {
                guard var row = try TriggerRow.fetchOne(db, key: id) else { continue }
                settle(&row, reason: reason, id: id)
                if out[id] != nil {
                    row.updatedAt = t
                    try row.update(db)
                }
            }
            return out
        }
    }

    func insertSchedule(_ row: TriggerRow) async throws {
        try await db.write { db in try row.insert(db) }
    }

    /// Removes an operator schedule (with its buffer); false when there was none.
    func deleteSchedule(_ id: String) async throws -> Bool {
        try await db.write { db in
            try db.execute(sql: "DELETE FROM trigger_buffer WHERE trigger_id = ? AND EXISTS (SELECT 1 FROM triggers WHERE id = ? AND source = 'operator')",
                           arguments: [id, id])
            try db.execute(sql: "DELETE FROM triggers WHERE id = ? AND source = 'operator'", arguments: [id])
            return db.changesCount > 0
        }
    }

    func setPaused(_ id: String, paused: Bool, note: String?, by actor: String, now: Date) async throws -> TriggerRow? {
        try await db.write { db in
            guard var row = try TriggerRow.fetchOne(db, key: id) else { return nil }
            row.paused = paused
            row.pauseNote = paused ? note : nil
            row.pausedBy = paused ? actor : nil
            row.pausedAt = paused ? now.timeIntervalSince1970 : nil
            row.updatedAt = now.timeIntervalSince1970
            try row.update(db)
            return row
        }
    }

    /// Updates the in-memory view's persistent half: the next fire, and slots
    /// accounted for without a run (skipped, dropped, buffered).
    func account(_ id: String, lastSlot: Date?, next: Date?, clearNext: Bool = false, skipped: Int = 0, dropped: Int = 0,
                 pollKey: String? = nil, error: String? = nil) async throws {
        try await db.write { db in
            try db.cachedStatement(sql: """
                UPDATE triggers SET last_slot_at = NULLIF(\(db.dialect.greatest("COALESCE(last_slot_at, 0)", "COALESCE(?, 0)")), 0),
                    next_fire_at = CASE WHEN ? = 1 THEN NULL ELSE COALESCE(?, next_fire_at) END,
                    skipped = skipped + ?, dropped = dropped + ?, poll_key = COALESCE(?, poll_key),
                    last_error = COALESCE(?, last_error), updated_at = ?
                WHERE id = ?
                """).execute(arguments: [lastSlot?.timeIntervalSince1970, clearNext, next?.timeIntervalSince1970, skipped, dropped, pollKey,
                                         error, Date().timeIntervalSince1970, id])
        }
    }

    func recordError(_ id: String, _ message: String) async throws {
        try await db.write { db in
            try db.execute(sql: "UPDATE triggers SET last_error = ?, last_outcome = 'error', updated_at = ? WHERE id = ?",
                           arguments: [message, Date().timeIntervalSince1970, id])
        }
    }

    /// The origin of a run fired for `slot` (nil: an event or a manual fire).
    /// Its transaction checks the slot is still unaccounted for, counts the fire,
    /// and takes a buffered fire out of the buffer when it came from there.
    static func fireOrigin(triggerId: String, slot: Date?, next: Date?, buffered: Int?, extra: (@Sendable (any StoreConnection, String) throws -> Void)? = nil,
                           scheduledAt: Date?) -> RunOrigin {
        RunOrigin(triggerId: triggerId, scheduledAt: scheduledAt) { db, runId in
            let now = Date().timeIntervalSince1970
            if let buffered {
                try db.execute(sql: "DELETE FROM trigger_buffer WHERE trigger_id = ? AND seq = ?", arguments: [triggerId, buffered])
                guard db.changesCount == 1 else { throw FireConflict() }
            } else if let slot {
                try db.cachedStatement(sql: """
                    UPDATE triggers SET last_slot_at = ? WHERE id = ? AND (last_slot_at IS NULL OR last_slot_at < ?)
                    """).execute(arguments: [slot.timeIntervalSince1970, triggerId, slot.timeIntervalSince1970])
                guard db.changesCount == 1 else { throw FireConflict() }
            }
            try db.cachedStatement(sql: """
                UPDATE triggers SET fired = fired + 1, last_fired_at = ?, next_fire_at = COALESCE(?, next_fire_at), last_outcome = 'started',
                    last_error = NULL, updated_at = ? WHERE id = ?
                """).execute(arguments: [now, next?.timeIntervalSince1970, now, triggerId])
            try extra?(db, runId)
        }
    }

    // MARK: The buffer

    /// Adds a fire to the trigger's buffer unless it holds `max` already;
    /// false: it was full (the fire is dropped and counted).
    func buffer(_ id: String, slot: Date?, input: JSONValue, reason: String, max: Int, next: Date?,
                extra: (@Sendable (any StoreConnection, String) throws -> Void)? = nil) async throws -> Bool {
        try await db.write { db in
            let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM trigger_buffer WHERE trigger_id = ?", arguments: [id]) ?? 0
            let t = Date().timeIntervalSince1970
            let slotT = slot?.timeIntervalSince1970
            guard count < max else {
                try db.execute(sql: """
                    UPDATE triggers SET dropped = dropped + 1, last_slot_at = NULLIF(\(db.dialect.greatest("COALESCE(last_slot_at, 0)", "COALESCE(?, 0)")), 0),
                        next_fire_at = COALESCE(?, next_fire_at), updated_at = ? WHERE id = ?
                    """, arguments: [slotT, next?.timeIntervalSince1970, t, id])
                return false
            }
            let seq = (try Int.fetchOne(db, sql: "SELECT MAX(seq) FROM trigger_buffer WHERE trigger_id = ?", arguments: [id]) ?? 0) + 1
            try BufferedFire(triggerId: id, seq: seq, slot: slotT, input: input.jsonText, reason: reason, createdAt: t).insert(db)
            // What the fire itself remembers (a webhook's delivery id) is remembered with the buffered fire.
            try extra?(db, "")
            try db.execute(sql: """
                UPDATE triggers SET last_slot_at = NULLIF(\(db.dialect.greatest("COALESCE(last_slot_at, 0)", "COALESCE(?, 0)")), 0),
                    next_fire_at = COALESCE(?, next_fire_at), updated_at = ? WHERE id = ?
                """, arguments: [slotT, next?.timeIntervalSince1970, t, id])
            return true
        }
    }

    func dropBuffered(_ id: String, seq: Int) async throws {
        try await db.write { db in
            try db.execute(sql: "DELETE FROM trigger_buffer WHERE trigger_id = ? AND seq = ?", arguments: [id, seq])
        }
    }

    func bufferedFires(_ id: String, limit: Int = 1) async throws -> [BufferedFire] {
        try await db.read { db in
            try BufferedFire.fetchAll(db, sql: "SELECT * FROM trigger_buffer WHERE trigger_id = ? ORDER BY seq LIMIT ?", arguments: [id, limit])
        }
    }

    func bufferDepths() async throws -> [String: Int] {
        try await db.read { db in
            var out: [String: Int] = [:]
            for row in try StoreRow.fetchAll(db, sql: "SELECT trigger_id, COUNT(*) AS n FROM trigger_buffer GROUP BY trigger_id") {
                out[row["trigger_id"]] = row["n"]
            }
            return out
        }
    }

    /// Runs each trigger fired that have not ended (queued, running or waiting).
    func inflightByTrigger() async throws -> [String: Set<String>] {
        try await db.read { db in
            var out: [String: Set<String>] = [:]
            for row in try StoreRow.fetchAll(db, sql: """
                SELECT id, trigger_id FROM runs WHERE trigger_id IS NOT NULL AND status IN ('queued', 'running', 'waiting')
                """) {
                out[row["trigger_id"], default: []].insert(row["id"])
            }
            return out
        }
    }
}
