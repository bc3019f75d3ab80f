import Crypto
import Foundation

/// Reading the chain several gateways share, from the database: pages for
/// people (newest first), the whole chain oldest first (export, verify), and
/// the checkpoints and keys that vouch for it. The indexed columns serve the
/// filters; what is returned, hashed and verified is always the stored line.
public enum SharedAuditReader {
    /// Matching entries, newest first, at most `limit`.
    static func query(_ engine: any StoreEngine, _ filter: AuditFilter, limit: Int) async throws -> [AuditEntry] {
        let (conditions, arguments) = where_(filter)
        let lines = try await engine.read { db in
            try String.fetchAll(db, sql: "SELECT line FROM audit_entries\(conditions) ORDER BY seq DESC LIMIT ?",
                                arguments: StoreArguments(values: arguments + [.integer(Int64(limit))]))
        }
        return try lines.map(decode)
    }

    /// Every matching entry, oldest first, a page at a time, up to the head
    /// the chain had when the export began.
    static func export(_ engine: any StoreEngine, _ filter: AuditFilter, page: Int = 1000,
                       _ body: ([AuditEntry]) async throws -> Void) async throws {
        let head = try await chainHead(engine).seq
        var after = 0
        while after < head {
            let entries = try await lines(engine, filter, after: after, through: head, page: page).map(decode)
            guard let last = entries.last else { break }
            try await body(entries)
            after = last.seq
        }
    }

    /// Stored lines with `after < seq <= through`, in order, at most `page`.
    static func lines(_ engine: any StoreEngine, _ filter: AuditFilter = AuditFilter(), after: Int, through: Int, page: Int) async throws -> [String] {
        var (conditions, arguments) = where_(filter)
        conditions += (conditions.isEmpty ? " WHERE" : " AND") + " seq > ? AND seq <= ?"
        arguments += [.integer(Int64(after)), .integer(Int64(through)), .integer(Int64(page))]
        let (sql, values) = ("SELECT line FROM audit_entries\(conditions) ORDER BY seq LIMIT ?", arguments)
        return try await engine.read { db in try String.fetchAll(db, sql: sql, arguments: StoreArguments(values: values)) }
    }

    /// The last entry committed, as the head row says.
    static func chainHead(_ engine: any StoreEngine) async throws -> (seq: Int, hash: String) {
        try await engine.read { db in
            guard let row = try StoreRow.fetchOne(db, sql: "SELECT seq, entry_hash FROM audit_head WHERE id = 1") else { return (0, AuditEntry.genesis) }
            return (row["seq"] as Int, row["entry_hash"] as String)
        }
    }

    /// Every checkpoint, in chain order.
    static func checkpoints(_ engine: any StoreEngine) async throws -> [AuditCheckpoint] {
        try await engine.read { db in
            try StoreRow.fetchAll(db, sql: "SELECT gateway, seq, entry_hash, timestamp, signature FROM audit_checkpoints ORDER BY seq, gateway").map {
                AuditCheckpoint(seq: $0["seq"], entryHash: $0["entry_hash"], timestamp: $0["timestamp"], signature: $0["signature"], gateway: $0["gateway"] as String)
            }
        }
    }

    /// Every gateway's recorded public keys.
    static func keys(_ engine: any StoreEngine) async throws -> [AuditBundle.Key] {
        try await engine.read { db in
            try StoreRow.fetchAll(db, sql: "SELECT gateway, public_key, added_at FROM audit_keys ORDER BY added_at, gateway").map {
                AuditBundle.Key(gateway: $0["gateway"], publicKey: $0["public_key"], addedAt: $0["added_at"])
            }
        }
    }

    static func decode(_ line: String) throws -> AuditEntry {
        do { return try JSONDecoder().decode(AuditEntry.self, from: Data(line.utf8)) } catch {
            throw AuditError.io("an entry in the database is not an audit entry: \(line.prefix(200))")
        }
    }

    /// The filter as SQL over the indexed columns (`?` placeholders, in order).
    private static func where_(_ f: AuditFilter) -> (String, [StoreValue]) {
        var conditions: [String] = []
        var arguments: [StoreValue] = []
        func add(_ sql: String, _ values: String...) {
            conditions.append(sql)
            arguments += values.map { .text($0) }
        }
        if let runId = f.runId { add("run_id = ?", runId) }
        if let actor = f.actor { add("actor = ?", actor) }
        if let gateway = f.gateway { add("gateway = ?", gateway) }
        if let action = f.action {
            if action.hasSuffix(".*") {
                let family = String(action.dropLast())
                conditions.append("substr(action, 1, CAST(? AS INTEGER)) = ?")
                arguments += [.integer(Int64(family.count)), .text(family)]
            } else {
                add("action = ?", action)
            }
        }
        if let since = f.since { add("timestamp >= ?", since) }
        if let until = f.until { add("timestamp < ?", until) }
        if let before = f.before {
            conditions.append("seq < ?")
            arguments.append(.integer(Int64(before)))
        }
        return (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "), arguments)
    }
}
