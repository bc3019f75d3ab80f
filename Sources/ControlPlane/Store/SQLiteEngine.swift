import Foundation
import GRDB

/// The embedded store: one SQLite file in WAL mode, through GRDB's pool (one
/// writer, concurrent readers on snapshots).
public final class SQLiteEngine: StoreEngine {
    public let dialect = StoreDialect.sqlite
    public let path: String
    public var location: String { path }
    let pool: DatabasePool
    public let member: String

    public init(path: String, durability: RunStore.Durability, member: String = RunStore.localMember) throws {
        self.path = path
        self.member = member
        var config = Configuration()
        config.busyMode = .timeout(10)
        let existed = FileManager.default.fileExists(atPath: path)
        pool = try DatabasePool(path: path, configuration: config)
        if !existed { chmod(path, 0o600) }
        // On the writer, after the pool switched it to WAL: SQLite builds that
        // set SQLITE_DEFAULT_WAL_SYNCHRONOUS (Debian's among them) reset
        // `synchronous` to NORMAL at that switch, so a setting made when the
        // connection opened would not hold, and commits would not be fsynced.
        let level = durability == .full ? "FULL" : "NORMAL"
        try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = \(level)") }
    }

    func migrate(_ migrations: [StoreMigration]) throws {
        try StoreMigrator.migrate(migrations, dialect: .sqlite, location: path) { body in
            try pool.write { db in try body(SQLiteConnection(db, member: member)) }
        }
    }

    public func read<T: Sendable>(_ patience: StorePatience, _ body: @escaping @Sendable (any StoreConnection) throws -> T) async throws -> T {
        let member = member
        return try await pool.read { db in try body(SQLiteConnection(db, member: member)) }
    }

    public func write<T: Sendable>(_ patience: StorePatience, _ body: @escaping @Sendable (any StoreConnection) throws -> T) async throws -> T {
        let member = member
        return try await pool.write { db in try body(SQLiteConnection(db, member: member)) }
    }

    public func synchronousLevel() async throws -> Int {
        try await pool.write { try Int.fetchOne($0, sql: "PRAGMA synchronous") ?? -1 }
    }

    public func close() async { try? pool.close() }
}

/// A GRDB connection inside one of the pool's transactions.
final class SQLiteConnection: StoreConnection {
    let db: Database
    let dialect = StoreDialect.sqlite
    let member: String
    var changesCount: Int { db.changesCount }

    init(_ db: Database, member: String) {
        self.db = db
        self.member = member
    }

    /// One gateway per SQLite file: nobody to tell.
    func signal(_ signal: FleetSignal) throws {}

    func execute(sql: String, arguments: StoreArguments, cached: Bool) throws {
        do {
            let statement = cached ? try db.cachedStatement(sql: sql) : try db.makeStatement(sql: sql)
            try statement.execute(arguments: Self.arguments(arguments))
        } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
            throw StoreConstraintError(message: error.message ?? "\(error)")
        }
    }

    func fetchRows(sql: String, arguments: StoreArguments, cached: Bool) throws -> [StoreRow] {
        let statement = cached ? try db.cachedStatement(sql: sql) : try db.makeStatement(sql: sql)
        let columns = statement.columnNames
        return try Row.fetchAll(statement, arguments: Self.arguments(arguments)).map { row in
            StoreRow(columns: columns, values: row.databaseValues.map(Self.value))
        }
    }

    static func arguments(_ a: StoreArguments) -> StatementArguments {
        StatementArguments(a.values.map { v -> (any DatabaseValueConvertible)? in
            switch v {
            case .null: nil
            case let .integer(i): i
            case let .real(d): d
            case let .text(s): s
            case let .blob(b): Data(b)
            }
        })
    }

    static func value(_ v: DatabaseValue) -> StoreValue {
        switch v.storage {
        case .null: .null
        case let .int64(i): .integer(i)
        case let .double(d): .real(d)
        case let .string(s): .text(s)
        case let .blob(b): .blob([UInt8](b))
        }
    }
}
