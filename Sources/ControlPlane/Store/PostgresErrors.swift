import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// A COMMIT whose answer was lost with the connection: the transaction may or
/// may not have committed, so it is not tried again.
public struct CommitUnknown: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { "the connection was lost during COMMIT (\(reason)): whether it committed is unknown" }
}

/// The database's reachability as the store calls see it, logged on change only.
final class Outage: Sendable {
    private let down = Mutex(false)

    var isDown: Bool { down.withLock { $0 } }

    func lost(_ location: String, _ why: String, logger: Logger) {
        guard down.withLock({ was in defer { was = true }; return !was }) else { return }
        logger.error("store: PostgreSQL at \(location) cannot be reached (\(why)); runs wait for it and go on when it is back")
    }

    func back(_ location: String, logger: Logger) {
        guard down.withLock({ was in defer { was = false }; return was }) else { return }
        logger.notice("store: PostgreSQL at \(location) is reachable again")
    }
}

/// A database error with the statement it came from, as the engine reports it.
struct PostgresServerError: Error, CustomStringConvertible {
    let sqlState: String?
    let message: String
    let sql: String
    var description: String { "PostgreSQL \(sqlState ?? "error"): \(message) (in: \(sql.prefix(200)))" }
}

public enum PostgresStoreError: Error, CustomStringConvertible {
    case unreachable(String, String)
    case migration(String, String)
    case badURL(String)
    case unavailable(String, String)

    public var isUnavailable: Bool { if case .unavailable = self { true } else { false } }

    public var description: String {
        switch self {
        case let .unreachable(at, why): "cannot reach PostgreSQL at \(at): \(why)"
        case let .migration(at, why): "cannot migrate the store at \(at): \(why)"
        case let .badURL(why): why
        case let .unavailable(at, why): "PostgreSQL at \(at) cannot be reached: \(why)"
        }
    }
}

/// A transaction that concurrent ones kept making impossible to order, for
/// all of `PostgresEngine.retryBudget`: the API answers 503, to be tried again.
public struct StoreContended: Error, CustomStringConvertible {
    let attempts: Int
    let last: String
    public var description: String {
        "the database could not order this write with concurrent ones in \(attempts) attempts (\(last))"
    }
}
