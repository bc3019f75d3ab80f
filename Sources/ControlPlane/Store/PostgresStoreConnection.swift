import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// One leased connection inside one transaction. Statements are written with
/// `?` placeholders; this numbers them (`$1`, `$2`, …) for PostgreSQL.
final class PostgresStoreConnection: StoreConnection {
    let connection: PostgresConnection
    let logger: Logger
    let member: String
    let dialect = StoreDialect.postgres
    /// How long a statement may go unanswered; nil: as long as it takes.
    let deadline: StatementDeadline?
    private(set) var changesCount = 0

    init(_ connection: PostgresConnection, logger: Logger, member: String, deadline: StatementDeadline?) {
        self.connection = connection
        self.logger = logger
        self.member = member
        self.deadline = deadline
    }

    func signal(_ signal: FleetSignal) throws {
        _ = try run("SELECT pg_notify(?, ?)", [FleetSignal.channel, signal.payload(from: member)])
    }

    func execute(sql: String, arguments: StoreArguments, cached: Bool) throws {
        let result = try run(sql, arguments)
        changesCount = result.metadata.rows ?? 0
    }

    func fetchRows(sql: String, arguments: StoreArguments, cached: Bool) throws -> [StoreRow] {
        let result = try run(sql, arguments)
        return try result.rows.map { row in
            var columns: [String] = []
            var values: [StoreValue] = []
            for cell in row {
                columns.append(cell.columnName)
                values.append(try PostgresCells.value(cell))
            }
            return StoreRow(columns: columns, values: values)
        }
    }

    private func run(_ sql: String, _ arguments: StoreArguments) throws -> PostgresQueryResult {
        let query = PostgresQuery(unsafeSQL: PostgresSQL.numbered(sql), binds: PostgresCells.binds(arguments))
        do {
            return try Self.answer(connection.query(query, logger: logger), on: connection, within: deadline)
        } catch let error as PSQLError where error.serverInfo != nil {
            // The server's refusal, with its SQLSTATE. Anything else (the
            // connection closed, a protocol error) stays postgres-nio's own, so
            // the engine can tell a lost connection by its code.
            let state = error.serverInfo?[.sqlState]
            let message = error.serverInfo?[.message] ?? PostgresEngine.describe(error)
            if state == "23505" { throw StoreConstraintError(message: message) }
            throw PostgresServerError(sqlState: state, message: message, sql: sql)
        }
    }

    /// Waits on this (pool) thread for a statement's answer. postgres-nio hands
    /// a statement to its channel with no write promise, so one written to a
    /// channel that has already closed (a connection the server ended, lent
    /// before the pool heard of it) is dropped, and its answer's promise is
    /// never completed: `wait()` would hold this thread, and the run whose
    /// write it was, for good. So the wait looks at the connection every
    /// second, and a connection closed with no answer is a lost one.
    ///
    /// A connection whose path died silently (a firewall or NAT that dropped
    /// the flow, a server host that vanished) stays open for as long as the
    /// kernel retransmits, about 15 minutes: so a statement unanswered
    /// `within` its deadline closes the connection, and is a lost one too.
    /// postgres-nio has no hook for a socket option (`TCP_USER_TIMEOUT`) on
    /// the pool's connections, so the deadline is kept here.
    ///
    /// A missed deadline is reported (`StatementDeadline.missed`) before this
    /// returns, so before the closed connection goes back to the pool: a call
    /// that is lent it before the pool hears of the close fails with "closed
    /// by this gateway", which is only this miss's consequence, and must not
    /// be what the operator is told first.
    static func answer<T: Sendable>(_ future: EventLoopFuture<T>, on connection: PostgresConnection, within deadline: StatementDeadline?) throws -> T {
        let answer = Answer<T>()
        future.whenComplete { result in
            answer.result.withLock { $0 = result }
            answer.arrived.signal()
        }
        let sent = ContinuousClock.now
        while answer.arrived.wait(timeout: .now() + 1) == .timedOut {
            // The handler fails what it still holds as the channel closes: a
            // moment more for that answer, which says more than this one.
            if connection.isClosed {
                if answer.arrived.wait(timeout: .now() + 0.1) == .timedOut { throw ConnectionClosed() }
                break
            }
            if let deadline, ContinuousClock.now - sent >= deadline.limit {
                // Closed, so the pool replaces it and no later statement is sent on it.
                connection.close().whenComplete { _ in }
                _ = answer.arrived.wait(timeout: .now() + 0.1)
                // An answer that came just in time is still the answer.
                if case let .success(value)? = answer.result.withLock({ $0 }) { return value }
                let missed = StatementUnanswered(deadline: deadline.limit)
                deadline.missed(missed)
                throw missed
            }
        }
        return try answer.result.withLock { $0! }.get()
    }

    private final class Answer<T: Sendable>: Sendable {
        let arrived = DispatchSemaphore(value: 0)
        let result = Mutex<Result<T, any Error>?>(nil)
    }
}

/// How long a statement may go unanswered (`storage.statementTimeoutSeconds`),
/// and who is told when one is not answered in time.
struct StatementDeadline: Sendable {
    let limit: Duration
    let missed: @Sendable (StatementUnanswered) -> Void
}

/// A statement the database did not answer within `storage.statementTimeoutSeconds`.
struct StatementUnanswered: Error, CustomStringConvertible {
    let deadline: Duration
    var description: String {
        "the database did not answer a statement in \(deadline.components.seconds) s (storage.statementTimeoutSeconds): its connection is taken for lost"
    }
}

/// A statement whose connection closed before it was answered.
struct ConnectionClosed: Error, CustomStringConvertible {
    var description: String { "the connection to the database closed before the statement was answered" }
}
