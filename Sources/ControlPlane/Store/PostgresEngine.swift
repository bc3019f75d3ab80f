import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO
import Synchronization
import Wire

/// The shared store: a PostgreSQL database, through postgres-nio's pooled
/// client. A store body is synchronous (as GRDB's are), so it runs on a
/// thread of the engine's own pool while it holds a leased connection, and
/// waits there for each statement's answer; no event loop or task thread ever
/// blocks. Writes are SERIALIZABLE and retried when PostgreSQL reports that a
/// concurrent transaction made them impossible to order, so every body sees
/// what SQLite's single writer would have shown it.
public final class PostgresEngine: StoreEngine {
    public let dialect = StoreDialect.postgres
    public let location: String
    let client: PostgresClient
    let threads: NIOThreadPool
    let durability: RunStore.Durability
    let logger: Logger
    /// Where it is; the fleet's own connection (signals, the trigger leader's lock) is made from it.
    let url: PostgresURL
    /// The gateway this engine writes for: `runs.owner`, and the sender of its signals.
    public let member: String
    /// How long a statement may go unanswered before its connection is taken
    /// for lost (`storage.statementTimeoutSeconds`). A miss is the outage's
    /// reason, said by the call that saw it (see `PostgresStoreConnection.answer`).
    let statementDeadline: StatementDeadline
    private let running: Task<Void, Never>
    /// Set at close: calls waiting for the database stop waiting.
    private let closing = Mutex(false)
    /// Said once when the database is lost and once when it is back, however many calls wait.
    let outage = Outage()

    /// Connects once (to fail fast, with the reason, when the database cannot
    /// be reached), applies the migrations, and starts the pool.
    init(url: PostgresURL, poolSize: Int, durability: RunStore.Durability, migrations: [StoreMigration], member: String,
         statementTimeout: Duration = .seconds(60), logger: Logger = Logger(label: "skelm.store")) throws {
        self.location = url.redacted
        let (outage, location) = (outage, url.redacted)
        statementDeadline = StatementDeadline(limit: statementTimeout) { outage.lost(location, $0.description, logger: logger) }
        self.durability = durability
        self.logger = logger
        self.url = url
        self.member = member
        let first: PostgresConnection
        do {
            var config = try url.connectionConfiguration()
            config.options.connectTimeout = .seconds(10)
            first = try PostgresConnection.connect(on: MultiThreadedEventLoopGroup.singleton.any(), configuration: config, id: 0,
                                                   logger: logger).wait()
        } catch {
            throw PostgresStoreError.unreachable(url.redacted, Self.describe(error))
        }
        defer { try? first.close().wait() }
        do {
            // Gateways that start together take turns: the first migrates, the
            // others find it done. The lock is the session's, released when
            // this connection closes whatever happens. Neither the wait for the
            // lock nor a migration has a statement deadline: either can take
            // long, and the gateway is not serving yet.
            try PostgresStoreConnection(first, logger: logger, member: member, deadline: nil)
                .execute(sql: "SELECT pg_advisory_lock(\(StoreMigrator.advisoryLock))")
            try StoreMigrator.migrate(migrations, dialect: .postgres, location: url.redacted) { body in
                _ = try Self.transaction(first, write: true, durability: durability, logger: logger, member: member, deadline: nil) { try body($0) }
            }
        } catch let error as StoreVersionError {
            throw error
        } catch {
            throw PostgresStoreError.migration(url.redacted, Self.describe(error))
        }
        var clientConfig = try url.clientConfiguration()
        clientConfig.options.maximumConnections = poolSize
        clientConfig.options.minimumConnections = 0
        // The pool's own log at errors only: it warns when a lease comes before
        // its run loop has started (which the lease then waits for), and every
        // failed statement is reported by the store with its reason anyway.
        var background = logger
        background.logLevel = .error
        client = PostgresClient(configuration: clientConfig, backgroundLogger: background)
        threads = NIOThreadPool(numberOfThreads: poolSize)
        threads.start()
        let client = client
        running = Task { await client.run() }
    }

    public func read<T: Sendable>(_ patience: StorePatience, _ body: @escaping @Sendable (any StoreConnection) throws -> T) async throws -> T {
        try await run(write: false, patience, body)
    }

    public func write<T: Sendable>(_ patience: StorePatience, _ body: @escaping @Sendable (any StoreConnection) throws -> T) async throws -> T {
        try await run(write: true, patience, body)
    }

    /// A write that serializes on a row it locks (`SELECT … FOR UPDATE`) rather
    /// than on SERIALIZABLE's conflict checks: READ COMMITTED, so a writer
    /// that waited for the lock reads the row as its holder committed it and
    /// goes on, where SERIALIZABLE would fail it and start it over. Always
    /// committed synchronously, whatever `storage.durability` says: the audit
    /// chain is appended this way, and an entry is durable before its action
    /// is reported done.
    public func writeLocking<T: Sendable>(_ patience: StorePatience, _ body: @escaping @Sendable (any StoreConnection) throws -> T) async throws -> T {
        try await run(write: true, isolation: .locking, patience, body)
    }

    /// READ COMMITTED, committed as `storage.durability` says: for a write
    /// whose only conflicts are caught by unique constraints (see
    /// `StoreEngine.writeNew`).
    public func writeNew<T: Sendable>(_ patience: StorePatience, _ body: @escaping @Sendable (any StoreConnection) throws -> T) async throws -> T {
        try await run(write: true, isolation: .readCommitted, patience, body)
    }

    /// How a write transaction is isolated from concurrent ones.
    enum WriteIsolation: Sendable {
        case serializable
        case readCommitted
        /// READ COMMITTED, serialized by a row lock, always committed synchronously.
        case locking
    }

    /// How long a `brief` call waits for a database known to be away (a call
    /// has just seen a connection lost) before it fails, and how long it
    /// waits otherwise: a pool slow to lend a connection on a loaded host is
    /// not an outage.
    static let briefPatience: Duration = .seconds(5)
    static let briefPatienceUnsure: Duration = .seconds(30)

    /// One body in one transaction, tried again while the database cannot be
    /// reached: a transaction a lost connection cut short was rolled back by
    /// the server, so running it again changes nothing twice. One whose COMMIT
    /// got no answer may have committed: that fails (`CommitUnknown`), never retried.
    private func run<T: Sendable>(write: Bool, isolation: WriteIsolation = .serializable, _ patience: StorePatience, _ body: @escaping @Sendable (any StoreConnection) throws -> T) async throws -> T {
        let started = ContinuousClock.now
        var delay = Duration.milliseconds(50)
        var waiting = false
        let outage = outage
        @Sendable func deadline() -> ContinuousClock.Instant { started + (outage.isDown ? Self.briefPatience : Self.briefPatienceUnsure) }
        while true {
            // A brief call never waits past its deadline, not even for the pool
            // (which would wait a minute for a database that is away). The
            // deadline is read again while it waits: an outage another call
            // notices meanwhile shortens it.
            let floor = ContinuousClock.now + .milliseconds(100)
            var limit: (@Sendable () -> ContinuousClock.Instant)?
            if patience == .brief { limit = { @Sendable in max(deadline(), floor) } }
            do {
                let result = try await attempt(write: write, isolation: isolation, until: limit, body)
                if waiting || outage.isDown { outage.back(location, logger: logger) }
                return result
            } catch {
                // A call given up by its caller (cancelled) says nothing about the database.
                guard !Task.isCancelled, Self.lostConnection(error), !closing.withLock({ $0 }) else { throw error }
                if !waiting {
                    waiting = true
                    outage.lost(location, Self.describe(error), logger: logger)
                }
                if patience == .brief, ContinuousClock.now >= deadline() {
                    throw PostgresStoreError.unavailable(location, Self.describe(error))
                }
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(1))
            }
        }
    }

    private enum Lease: Sendable { case waiting, lent, abandoned }
    /// Who settles an attempt first: the lent connection or the time limit.
    private final class LeaseState: Sendable {
        let state = Mutex(Lease.waiting)
        /// Moves from `waiting` to `to`; false when the other side settled it first.
        func settle(_ to: Lease) -> Bool {
            state.withLock { s in
                guard case .waiting = s else { return false }
                s = to
                return true
            }
        }
    }
    private enum Attempt<T: Sendable>: Sendable { case done(T), timedOut }
    struct LeaseTimeout: Error, CustomStringConvertible {
        var description: String { "no connection to the database in time" }
    }

    /// One try, waiting for a connection until `until` says (nil: as long as
    /// the pool does). A body runs only once its connection is lent and the
    /// wait has not been given up: it never runs after the call reported failure.
    private func attempt<T: Sendable>(write: Bool, isolation: WriteIsolation, until: (@Sendable () -> ContinuousClock.Instant)?,
                                      _ body: @escaping @Sendable (any StoreConnection) throws -> T) async throws -> T {
        let (client, threads, logger, member, deadline) = (client, threads, logger, member, statementDeadline)
        let durability = isolation == .locking ? RunStore.Durability.full : durability
        guard let until else {
            return try await client.withConnection { connection in
                try await threads.runIfActive {
                    try Self.transaction(connection, write: write, isolation: isolation, durability: durability, logger: logger, member: member,
                                         deadline: deadline, body)
                }
            }
        }
        let lease = LeaseState()
        return try await withThrowingTaskGroup(of: Attempt<T>?.self) { group in
            group.addTask {
                .done(try await client.withConnection { connection in
                    guard lease.settle(.lent) else { throw LeaseTimeout() }
                    return try await threads.runIfActive {
                        try Self.transaction(connection, write: write, isolation: isolation, durability: durability, logger: logger, member: member,
                                         deadline: deadline, body)
                    }
                })
            }
            group.addTask {
                // In short naps, so a deadline brought forward is kept within a quarter second.
                while case let left = until() - .now, left > .zero {
                    try? await Task.sleep(for: min(left, .milliseconds(250)))
                    if Task.isCancelled { break }
                }
                return lease.settle(.abandoned) ? .timedOut : nil
            }
            while let next = try await group.next() {
                switch next {
                case let .done(result)?:
                    group.cancelAll()
                    return result
                case .timedOut?:
                    group.cancelAll()
                    throw LeaseTimeout()
                case nil:
                    continue
                }
            }
            throw LeaseTimeout()
        }
    }

    /// Whether an error says the connection (or the server) went away, rather
    /// than that a statement failed.
    static func lostConnection(_ error: any Error) -> Bool {
        if error is CommitUnknown { return false }
        if error is LeaseTimeout || error is ConnectionClosed || error is StatementUnanswered { return true }
        // The pool's own errors (its circuit breaker, tripped after a minute
        // without a new connection) are of a type postgres-nio exports only
        // from a module it marks internal (`_ConnectionPoolModule`): known by name.
        if String(reflecting: type(of: error)).hasSuffix(".ConnectionPoolError") { return true }
        if let e = error as? PSQLError {
            if [.serverClosedConnection, .connectionError, .uncleanShutdown, .clientClosedConnection, .poolClosed].contains(e.code) { return true }
            if let state = e.serverInfo?[.sqlState] { return lostState(state) }
            return false
        }
        if let e = error as? PostgresServerError, let state = e.sqlState { return lostState(state) }
        return error is NIOConnectionError || error is ChannelError || error is IOError
    }

    /// Connection exceptions (08…), the server shutting down or starting up
    /// (57P01–57P03), and a database closed to connections (55000 at connect).
    static func lostState(_ state: String) -> Bool {
        state.hasPrefix("08") || ["57P01", "57P02", "57P03", "55000"].contains(state)
    }

    public func synchronousLevel() async throws -> Int {
        try await write { db in
            try String.fetchOne(db, sql: "SELECT current_setting('synchronous_commit')") == "off" ? 1 : 2
        }
    }

    public func close() async {
        closing.withLock { $0 = true }
        // Bodies in flight finish (a run's end commits) before the pool goes; a
        // body stuck on a database that is gone is not waited for past 10 s.
        let threads = threads
        _ = await FirstOf.within(.seconds(10)) { try? await threads.shutdownGracefully() }
        running.cancel()
    }

    /// SQLSTATEs after which the whole transaction is tried again: a
    /// serialization failure and a deadlock.
    static let retried: Set<String> = ["40001", "40P01"]
    /// How long a transaction is tried again while it keeps failing so. A
    /// budget of time rather than of tries: on tables still nearly empty
    /// (a fresh database, a burst of submissions at start) PostgreSQL's
    /// predicate locks cover whole tables, and dozens of concurrent writers
    /// fail each other many times before the burst thins out.
    static let retryBudget: Duration = .seconds(10)

    /// One body in one transaction on `connection`, on the calling (pool) thread.
    static func transaction<T>(_ connection: PostgresConnection, write: Bool, isolation: WriteIsolation = .serializable, durability: RunStore.Durability, logger: Logger,
                               member: String, deadline: StatementDeadline?, _ body: (any StoreConnection) throws -> T) throws -> T {
        let db = PostgresStoreConnection(connection, logger: logger, member: member, deadline: deadline)
        let began = ContinuousClock.now
        var attempt = 0
        while true {
            attempt += 1
            do {
                try db.execute(sql: !write ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                                   : isolation == .serializable ? "BEGIN ISOLATION LEVEL SERIALIZABLE" : "BEGIN ISOLATION LEVEL READ COMMITTED")
                if write, durability == .normal { try db.execute(sql: "SET LOCAL synchronous_commit TO off") }
                // Whatever the server's or the role's default: what is locked this way is reported durable.
                if isolation == .locking { try db.execute(sql: "SET LOCAL synchronous_commit TO on") }
                let result = try body(db)
                do { try db.execute(sql: "COMMIT") } catch where lostConnection(error) {
                    throw CommitUnknown(reason: describe(error))
                }
                return result
            } catch {
                // Not on a connection that was lost (the server rolled the transaction
                // back itself): a query sent on a closed connection may never be
                // answered, and would hold this thread for good.
                if !(error is CommitUnknown), !lostConnection(error) { try? db.execute(sql: "ROLLBACK") }
                if let state = Self.sqlState(error), retried.contains(state) {
                    guard ContinuousClock.now - began < retryBudget else { throw StoreContended(attempts: attempt, last: describe(error)) }
                    // Backs off, with jitter so colliding writers do not collide
                    // again in step, for longer each time (up to 20 ms).
                    usleep(useconds_t.random(in: 100...useconds_t(min(attempt * 1_000, 20_000))))
                    continue
                }
                throw error
            }
        }
    }

    static func sqlState(_ error: any Error) -> String? {
        (error as? PSQLError)?.serverInfo?[.sqlState] ?? (error as? PostgresServerError)?.sqlState
    }

    /// The server's message when there is one; otherwise what the client saw,
    /// in words, with its cause. Never the client's whole dump (which holds
    /// the statement), nor its placeholder description of every `PSQLError`.
    static func describe(_ error: any Error) -> String {
        if let e = error as? PSQLError {
            if let message = e.serverInfo?[.message] { return message }
            let what = words(e.code)
            guard let underlying = e.underlying else { return what }
            return "\(what): \(describe(underlying))"
        }
        if let e = error as? PostgresServerError { return e.message }
        return "\(error)"
    }

    private static func words(_ code: PSQLError.Code) -> String {
        switch code {
        case .clientClosedConnection: "the connection was closed by this gateway"
        case .serverClosedConnection: "the server closed the connection"
        case .connectionError: "the connection failed"
        case .uncleanShutdown: "the connection ended without a clean shutdown"
        case .poolClosed: "the connection pool is closed"
        case .queryCancelled: "the statement was cancelled"
        default: "\(code)"
        }
    }
}
