import Foundation

/// `skelm store migrate`: a whole store copied into another, table by table,
/// page by page, each page one transaction of the target's.
extension RunStore {
    /// Every table the migrations make, parents before the rows that name them.
    static let tables: [(name: String, key: String)] = [
        ("runs", "id"), ("steps", "run_id, path"), ("events", "run_id, seq"), ("idempotency_keys", "key"),
        ("approvals", "id"), ("waits", "run_id, step"), ("triggers", "id"), ("trigger_buffer", "trigger_id, seq"),
        ("webhook_deliveries", "trigger_id, delivery_id"), ("queue_messages", "id"), ("agent_sessions", "id"),
    ]

    public struct CopyError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Rows per table in this store.
    public func rowCounts() async throws -> [(table: String, rows: Int)] {
        try await db.read { db in
            try Self.tables.map { t in (t.name, try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(t.name)") ?? 0) }
        }
    }

    /// Copies every row into `target`, which must hold none, and checks the
    /// counts match. Calls `progress` after each table.
    public func copy(into target: RunStore, page: Int = 1000, progress: @Sendable (String, Int) -> Void = { _, _ in }) async throws
        -> [(table: String, rows: Int)] {
        let held = try await target.rowCounts().filter { $0.rows > 0 }
        guard held.isEmpty else {
            throw CopyError(description: "the target store is not empty (" + held.map { "\($0.table): \($0.rows)" }.joined(separator: ", ")
                                + "); migrate into an empty database")
        }
        for table in Self.tables {
            var offset = 0
            while true {
                let at = offset
                let rows = try await db.read { db in
                    try StoreRow.fetchAll(db, sql: "SELECT * FROM \(table.name) ORDER BY \(table.key) LIMIT ? OFFSET ?", arguments: [page, at])
                }
                guard let first = rows.first else { break }
                let columns = first.columns
                let sql = "INSERT INTO \(table.name) (\(columns.joined(separator: ", "))) VALUES (\(columns.map { _ in "?" }.joined(separator: ", ")))"
                try await target.db.write { db in
                    for row in rows { try db.execute(sql: sql, arguments: StoreArguments(values: row.values), cached: true) }
                }
                offset += rows.count
                if rows.count < page { break }
            }
            progress(table.name, offset)
        }
        let (from, to) = (try await rowCounts(), try await target.rowCounts())
        for (a, b) in zip(from, to) where a.rows != b.rows {
            throw CopyError(description: "\(a.table): \(a.rows) rows here, \(b.rows) in the target after the copy")
        }
        return to
    }
}
