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
        let rows = try await engine.read { db in
            try StoreRow.fetchAll(db, sql: "SELECT seq, line FROM audit_entries\(conditions) ORDER BY seq DESC LIMIT ?",
                                  arguments: StoreArguments(values: arguments + [.integer(Int64(limit))]))
        }
        // The columns are the line's own (computed from it), checked again all the same.
        return try rows.map { try decode($0["line"]) }.filter(filter.matches)
    }

    /// Every matching entry, oldest first, a page at a time, up to the head
    /// the chain had when the export began.
    static func export(_ engine: any StoreEngine, _ filter: AuditFilter, page: Int = 1000,
                       _ body: ([AuditEntry]) async throws -> Void) async throws {
        let head = try await state(engine).head?.seq ?? 0
        var after = 0
        while after < head {
            let rows = try await lines(engine, filter, after: after, through: head, page: page)
            guard let last = rows.last else { break }
            try await body(try rows.map { try decode($0.line) }.filter(filter.matches))
            after = last.seq
        }
    }

    /// Stored lines with `after < seq <= through` (the column, which only
    /// rises page by page), in order, at most `page`.
    static func lines(_ engine: any StoreEngine, _ filter: AuditFilter = AuditFilter(), after: Int, through: Int,
                      page: Int) async throws -> [(seq: Int, line: String)] {
        var (conditions, arguments) = where_(filter)
        conditions += (conditions.isEmpty ? " WHERE" : " AND") + " seq > ? AND seq <= ?"
        arguments += [.integer(Int64(after)), .integer(Int64(through)), .integer(Int64(page))]
        let (sql, values) = ("SELECT seq, line FROM audit_entries\(conditions) ORDER BY seq LIMIT ?", arguments)
        return try await engine.read { db in
            try StoreRow.fetchAll(db, sql: sql, arguments: StoreArguments(values: values)).map { ($0["seq"], $0["line"]) }
        }
    }

    /// What vouches for the chain, read in one snapshot so that each names
    /// only what the others already hold: the head row (nil when it is
    /// missing), the highest seq stored, every checkpoint in chain order, and
    /// every gateway's recorded keys.
    struct State: Sendable {
        var head: (seq: Int, hash: String)?
        var maxSeq: Int
        var checkpoints: [AuditCheckpoint]
        var keys: [AuditBundle.Key]
    }

    static func state(_ engine: any StoreEngine) async throws -> State {
        try await engine.read { db in
            let head = try StoreRow.fetchOne(db, sql: "SELECT seq, entry_hash FROM audit_head WHERE id = 1").map { (seq: $0["seq"] as Int, hash: $0["entry_hash"] as String) }
            let maxSeq = try Int.fetchOne(db, sql: "SELECT MAX(seq) FROM audit_entries") ?? 0
            let checkpoints = try StoreRow.fetchAll(db, sql: "SELECT gateway, seq, entry_hash, timestamp, signature FROM audit_checkpoints ORDER BY seq, gateway").map {
                AuditCheckpoint(seq: $0["seq"], entryHash: $0["entry_hash"], timestamp: $0["timestamp"], signature: $0["signature"], gateway: $0["gateway"] as String)
            }
            let keys = try StoreRow.fetchAll(db, sql: "SELECT gateway, public_key, added_at FROM audit_keys ORDER BY added_at, gateway").map {
                AuditBundle.Key(gateway: $0["gateway"], publicKey: $0["public_key"], addedAt: $0["added_at"])
            }
            return State(head: head, maxSeq: maxSeq, checkpoints: checkpoints, keys: keys)
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
