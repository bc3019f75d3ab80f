import Foundation
import Wire

/// The trigger tables in the run store, and what a run's end writes to them in
/// the transaction that ends it.
enum TriggerSchema {
    static let sql = """
            ALTER TABLE runs ADD COLUMN trigger_id TEXT;
            ALTER TABLE runs ADD COLUMN scheduled_at REAL;
            CREATE INDEX runs_trigger_created ON runs(trigger_id, created_at, id) WHERE trigger_id IS NOT NULL;
            CREATE TABLE triggers (
                id TEXT PRIMARY KEY,
                workflow TEXT NOT NULL,
                kind TEXT NOT NULL,
                source TEXT NOT NULL,
                spec TEXT NOT NULL,
                spec_hash TEXT NOT NULL,
                armed_at REAL NOT NULL,
                paused INTEGER NOT NULL DEFAULT 0,
                pause_note TEXT,
                paused_by TEXT,
                paused_at REAL,
                disarmed_reason TEXT,
                next_fire_at REAL,
                last_slot_at REAL,
                last_fired_at REAL,
                fired INTEGER NOT NULL DEFAULT 0,
                skipped INTEGER NOT NULL DEFAULT 0,
                dropped INTEGER NOT NULL DEFAULT 0,
                last_outcome TEXT,
                last_error TEXT,
                poll_key TEXT,
                created_by TEXT,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            );
            CREATE TABLE trigger_buffer (
                trigger_id TEXT NOT NULL REFERENCES triggers(id) ON DELETE CASCADE,
                seq INTEGER NOT NULL,
                slot REAL,
                input TEXT NOT NULL,
                reason TEXT NOT NULL,
                created_at REAL NOT NULL,
                PRIMARY KEY (trigger_id, seq)
            ) WITHOUT ROWID;
            CREATE TABLE webhook_deliveries (
                trigger_id TEXT NOT NULL,
                delivery_id TEXT NOT NULL,
                run_id TEXT,
                expires_at REAL NOT NULL,
                PRIMARY KEY (trigger_id, delivery_id)
            ) WITHOUT ROWID;
            CREATE INDEX webhook_deliveries_expiry ON webhook_deliveries(expires_at);
            CREATE TABLE queue_messages (
                id TEXT PRIMARY KEY,
                queue TEXT NOT NULL,
                body TEXT NOT NULL,
                dedupe_id TEXT,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                max_attempts INTEGER NOT NULL DEFAULT 3,
                visible_at REAL NOT NULL,
                run_id TEXT,
                last_error TEXT,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            );
            CREATE UNIQUE INDEX queue_messages_dedupe ON queue_messages(queue, dedupe_id) WHERE dedupe_id IS NOT NULL;
            CREATE INDEX queue_messages_ready ON queue_messages(queue, status, visible_at);
            CREATE INDEX queue_messages_run ON queue_messages(run_id) WHERE run_id IS NOT NULL;
            """

    /// A fired run ended: its trigger's last outcome, and the queue message it
    /// carried, if any (done, offered again after a backoff, or dead-lettered).
    /// Returns the trigger's last error as recorded.
    static func runEnded(_ db: any StoreConnection, runId: String, triggerId: String, status: RunStatus, error: StepFailure?) throws -> String? {
        let now = Date().timeIntervalSince1970
        let why = error.map { "\($0.code): \($0.message)" }
        let lastError = status == .succeeded ? nil : why
        try db.cachedStatement(sql: "UPDATE triggers SET last_outcome = ?, last_error = ?, updated_at = ? WHERE id = ?")
            .execute(arguments: [status.rawValue, lastError, now, triggerId])
        switch status {
        case .succeeded:
            try db.cachedStatement(sql: "UPDATE queue_messages SET status = 'done', updated_at = ? WHERE run_id = ? AND status = 'inflight'")
                .execute(arguments: [now, runId])
        case .cancelled:
            // An operator (or the run's parent) stopped it: not retried; `redrive` offers it again.
            try db.cachedStatement(sql: """
                UPDATE queue_messages SET status = 'dead', last_error = ?, updated_at = ? WHERE run_id = ? AND status = 'inflight'
                """).execute(arguments: [why ?? "cancelled", now, runId])
        default:
            // Failed: offered again after a short backoff, or dead-lettered after its last attempt.
            try db.cachedStatement(sql: """
                UPDATE queue_messages SET
                    status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'ready' END,
                    visible_at = ? + \(db.dialect.least("60", "attempts * attempts")), last_error = ?, updated_at = ?
                WHERE run_id = ? AND status = 'inflight'
                """).execute(arguments: [now, why ?? status.rawValue, now, runId])
        }
        return lastError
    }
}
