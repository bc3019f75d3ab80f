import Foundation

/// The SQL both engines speak differs in a few places; the store asks its
/// connection for those fragments rather than writing either dialect.
public enum StoreDialect: String, Sendable {
    case sqlite, postgres

    /// A top-level field of a JSON object held as text, as text.
    func jsonField(_ column: String, _ key: String) -> String {
        switch self {
        case .sqlite: "json_extract(\(column), '$.\(key)')"
        case .postgres: "(\(column)::jsonb ->> '\(key)')"
        }
    }

    /// A non-negative number truncated to an integer.
    func truncate(_ expression: String) -> String {
        switch self {
        case .sqlite: "CAST(\(expression) AS INTEGER)"
        case .postgres: "CAST(TRUNC(\(expression)) AS BIGINT)"
        }
    }

    /// The greater of two values (SQLite's scalar MAX, PostgreSQL's GREATEST).
    func greatest(_ a: String, _ b: String) -> String {
        switch self {
        case .sqlite: "MAX(\(a), \(b))"
        case .postgres: "GREATEST(\(a), \(b))"
        }
    }

    func least(_ a: String, _ b: String) -> String {
        switch self {
        case .sqlite: "MIN(\(a), \(b))"
        case .postgres: "LEAST(\(a), \(b))"
        }
    }
}

/// One connection inside one transaction: what a store body reads and writes
/// through. Bodies are synchronous, as GRDB's are, and run on a thread of
/// their engine's, never on an event loop or a task's thread; statements use
/// `?` placeholders in both dialects.
public protocol StoreConnection: AnyObject {
    var dialect: StoreDialect { get }
    /// The gateway this connection writes for: the owner its runs are claimed
    /// by (`runs.owner`), and the sender its signals are tagged with.
    var member: String { get }
    /// Rows the last `execute` inserted, updated or deleted.
    var changesCount: Int { get }
    /// `cached`: a statement the hot path runs again and again (SQLite keeps it compiled).
    func execute(sql: String, arguments: StoreArguments, cached: Bool) throws
    func fetchRows(sql: String, arguments: StoreArguments, cached: Bool) throws -> [StoreRow]
    /// Tells the other gateways sharing the database, when this transaction
    /// commits (PostgreSQL's NOTIFY; nothing on SQLite, which has no others).
    func signal(_ signal: FleetSignal) throws
}

/// A statement kept compiled: `db.cachedStatement(sql:)`, as with GRDB.
public struct StoreStatement {
    let db: any StoreConnection
    let sql: String

    public func execute(arguments: StoreArguments = []) throws {
        try db.execute(sql: sql, arguments: arguments, cached: true)
    }
}

extension StoreConnection {
    public func execute(sql: String, arguments: StoreArguments = []) throws {
        try execute(sql: sql, arguments: arguments, cached: false)
    }

    public func cachedStatement(sql: String) -> StoreStatement { StoreStatement(db: self, sql: sql) }
}

extension StoreRow {
    public static func fetchAll(_ db: any StoreConnection, sql: String, arguments: StoreArguments = []) throws -> [StoreRow] {
        try db.fetchRows(sql: sql, arguments: arguments, cached: false)
    }

    public static func fetchOne(_ db: any StoreConnection, sql: String, arguments: StoreArguments = []) throws -> StoreRow? {
        try db.fetchRows(sql: sql, arguments: arguments, cached: false).first
    }

    public static func fetchAll(_ statement: StoreStatement, arguments: StoreArguments = []) throws -> [StoreRow] {
        try statement.db.fetchRows(sql: statement.sql, arguments: arguments, cached: true)
    }

    public static func fetchOne(_ statement: StoreStatement, arguments: StoreArguments = []) throws -> StoreRow? {
        try fetchAll(statement, arguments: arguments).first
    }
}

extension StoreValueConvertible {
    /// The first column of the first row; nil when there is no row or it is NULL.
    public static func fetchOne(_ db: any StoreConnection, sql: String, arguments: StoreArguments = []) throws -> Self? {
        try StoreRow.fetchOne(db, sql: sql, arguments: arguments).flatMap { $0.values.first }.flatMap(Self.fromStore)
    }

    public static func fetchOne(_ statement: StoreStatement, arguments: StoreArguments = []) throws -> Self? {
        try StoreRow.fetchOne(statement, arguments: arguments).flatMap { $0.values.first }.flatMap(Self.fromStore)
    }

    /// The first column of every row, NULLs left out.
    public static func fetchAll(_ db: any StoreConnection, sql: String, arguments: StoreArguments = []) throws -> [Self] {
        try StoreRow.fetchAll(db, sql: sql, arguments: arguments).compactMap { $0.values.first.flatMap(Self.fromStore) }
    }
}

/// A write that broke a UNIQUE or PRIMARY KEY constraint, in either engine.
public struct StoreConstraintError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { "constraint violated: \(message)" }
}
