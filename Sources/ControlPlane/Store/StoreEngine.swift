import Foundation

/// Where the run store keeps its tables: SQLite in the state directory, or a
/// PostgreSQL database several gateways can share. A body runs inside one
/// transaction and sees one consistent snapshot; a write body commits (and,
/// as durability asks, is flushed) before `write` returns, or changes nothing.
public protocol StoreEngine: Sendable {
    var dialect: StoreDialect { get }
    /// What the store is, for messages: a file's path, or a database's address without its password.
    var location: String { get }
    /// The gateway it writes for (`runs.owner`).
    var member: String { get }
    /// `patience`: how long to wait for a database that cannot be reached (see `StorePatience`).
    func read<T: Sendable>(_ patience: StorePatience, _ body: @escaping @Sendable (any StoreConnection) throws -> T) async throws -> T
    /// A write body may run more than once (PostgreSQL retries a transaction a
    /// concurrent one made impossible to serialize, or one a lost connection
    /// rolled back), so it changes nothing but the database.
    func write<T: Sendable>(_ patience: StorePatience, _ body: @escaping @Sendable (any StoreConnection) throws -> T) async throws -> T
    /// A write that only inserts rows of its own, and reads only rows it
    /// inserted or that a unique constraint guards: it needs no SERIALIZABLE
    /// conflict checks, which on PostgreSQL also fail writers that never
    /// touched one another's rows (its predicate locks cover whole pages,
    /// whole tables while a table is small), and can fail a burst of them
    /// again and again. A body that raced another past a unique constraint
    /// fails with `StoreConstraintError`; nothing of it is written.
    func writeNew<T: Sendable>(_ patience: StorePatience, _ body: @escaping @Sendable (any StoreConnection) throws -> T) async throws -> T
    /// The writer's `synchronous` level (SQLite: 2 FULL, 1 NORMAL; PostgreSQL:
    /// 2 when `synchronous_commit` is on, 1 when it is off).
    func synchronousLevel() async throws -> Int
    func close() async
}

/// How long a store call waits for a database it cannot reach (PostgreSQL
/// restarting, failing over, a network cut) before it fails. SQLite's file
/// is always there: it never waits.
public enum StorePatience: Sendable {
    /// A few seconds: an API request fails (503) rather than hang.
    case brief
    /// Until the database is back (or the gateway stops): a run's progress
    /// (its events, checkpoints, its end) waits, so its worker waits with it,
    /// and the run goes on when the database returns.
    case untilBack
}

extension StoreEngine {
    /// SQLite has one writer: every write is serialized already.
    public func writeNew<T: Sendable>(_ patience: StorePatience, _ body: @escaping @Sendable (any StoreConnection) throws -> T) async throws -> T {
        try await write(patience, body)
    }
    func read<T: Sendable>(_ body: @escaping @Sendable (any StoreConnection) throws -> T) async throws -> T { try await read(.brief, body) }
    func write<T: Sendable>(_ body: @escaping @Sendable (any StoreConnection) throws -> T) async throws -> T { try await write(.brief, body) }
}

/// The schema's versions: each migration has an id, and runs once, in order,
/// in a transaction of its own. A store that records an id this build does
/// not know was migrated by a newer gateway, and is refused.
struct StoreMigration: Sendable {
    let id: String
    /// The SQL, written once in SQLite's words; `PostgresEngine` translates
    /// its column types (see `PostgresSQL.ddl`).
    let sql: @Sendable (StoreDialect) -> String
}

public struct StoreVersionError: Error, CustomStringConvertible {
    public let location: String
    public let unknown: [String]
    public let known: String
    public var description: String {
        "the store at \(location) was migrated by a newer gateway: it has schema version\(unknown.count == 1 ? "" : "s") "
            + unknown.joined(separator: ", ") + "; this gateway knows versions up to \(known). Upgrade this gateway, or point it at another store"
    }
}

enum StoreMigrator {
    /// The table applied migrations are recorded in. SQLite keeps the name
    /// GRDB's migrator used, so stores it migrated open unchanged.
    /// The advisory lock migrations take on PostgreSQL (any constant the gateway uses nowhere else).
    static let advisoryLock: Int64 = 0x736b_656c_6d01

    static func table(_ dialect: StoreDialect) -> String { dialect == .sqlite ? "grdb_migrations" : "skelm_migrations" }

    /// Applies what is missing, after refusing a store a newer build migrated.
    /// `transaction` runs one body in one transaction.
    static func migrate(_ migrations: [StoreMigration], dialect: StoreDialect, location: String,
                        transaction: ((any StoreConnection) throws -> Void) throws -> Void) throws {
        let table = table(dialect)
        var applied: Set<String> = []
        try transaction { db in
            try db.execute(sql: "CREATE TABLE IF NOT EXISTS \(table) (identifier TEXT NOT NULL PRIMARY KEY)")
            applied = Set(try String.fetchAll(db, sql: "SELECT identifier FROM \(table)"))
        }
        let known = Set(migrations.map(\.id))
        let unknown = applied.subtracting(known).sorted()
        guard unknown.isEmpty else {
            throw StoreVersionError(location: location, unknown: unknown, known: migrations.last?.id ?? "none")
        }
        for migration in migrations where !applied.contains(migration.id) {
            try transaction { db in
                // Gateways that start together against one database take turns,
                // and a migration another one applied meanwhile is not run again.
                if dialect == .postgres { try db.execute(sql: "SELECT pg_advisory_xact_lock(\(advisoryLock))") }
                guard try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(table) WHERE identifier = ?", arguments: [migration.id]) == 0 else { return }
                let sql = migration.sql(dialect)
                for statement in split(dialect == .postgres ? PostgresSQL.ddl(sql) : sql) { try db.execute(sql: statement) }
                try db.execute(sql: "INSERT INTO \(table) (identifier) VALUES (?)", arguments: [migration.id])
            }
        }
    }

    /// Statements of a migration, one at a time (PostgreSQL's extended
    /// protocol takes one per query). Migrations hold no `;` inside a literal.
    static func split(_ sql: String) -> [String] {
        sql.split(separator: ";").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
    }
}
