import Foundation
import NIOCore
import PostgresNIO

/// The store's SQL as PostgreSQL takes it: the same statements, with numbered
/// placeholders, and the migrations' column types spelled as PostgreSQL's.
enum PostgresSQL {
    /// `?` → `$1`, `$2`, …; a `?` inside a quoted literal or identifier stays.
    static func numbered(_ sql: String) -> String {
        guard sql.contains("?") else { return sql }
        var out = ""
        out.reserveCapacity(sql.utf8.count + 16)
        var n = 0
        var quote: Character?
        for c in sql {
            if let q = quote {
                if c == q { quote = nil }
                out.append(c)
            } else if c == "'" || c == "\"" {
                quote = c
                out.append(c)
            } else if c == "?" {
                n += 1
                out += "$\(n)"
            } else {
                out.append(c)
            }
        }
        return out
    }

    /// A migration written for SQLite, for PostgreSQL: SQLite's INTEGER is 64
    /// bits (PostgreSQL's is 32), its REAL is a double (PostgreSQL's is a
    /// float), and `WITHOUT ROWID` has no meaning there.
    static func ddl(_ sql: String) -> String {
        var s = sql.replacingOccurrences(of: ") WITHOUT ROWID", with: ")")
        for (from, to) in [(" INTEGER", " BIGINT"), (" REAL", " DOUBLE PRECISION"), (" BLOB", " BYTEA")] {
            s = s.replacingOccurrences(of: from, with: to)
        }
        return s
    }
}

/// Values across the wire: binds from `StoreValue`s, and cells back to them.
enum PostgresCells {
    static func binds(_ arguments: StoreArguments) -> PostgresBindings {
        var binds = PostgresBindings(capacity: arguments.values.count)
        for value in arguments.values {
            switch value {
            case .null: binds.appendNull()
            case let .integer(i): binds.append(i)
            case let .real(d): binds.append(d)
            // PostgreSQL's text cannot hold NUL, which SQLite's can: a step's
            // message with one in it is stored with U+FFFD in its place rather
            // than failing the write that records the run's progress.
            case let .text(s): binds.append(s.contains("\0") ? s.replacingOccurrences(of: "\0", with: "\u{FFFD}") : s)
            case let .blob(b): binds.append(ByteBuffer(bytes: b))
            }
        }
        return binds
    }

    static func value(_ cell: PostgresCell) throws -> StoreValue {
        guard cell.bytes != nil else { return .null }
        switch cell.dataType {
        case .int2, .int4, .int8, .oid: return .integer(try cell.decode(Int64.self))
        case .float4, .float8: return .real(try cell.decode(Double.self))
        case .numeric: return .real(Double("\(try cell.decode(Decimal.self))") ?? .nan)
        case .bool: return .integer(try cell.decode(Bool.self) ? 1 : 0)
        case .bytea: return .blob(Array(try cell.decode(ByteBuffer.self).readableBytesView))
        default: return .text(try cell.decode(String.self))
        }
    }
}

/// `postgres://user:password@host:port/database?sslmode=…`, as `storage.url` gives it.
public struct PostgresURL: Sendable {
    /// libpq's meanings, so a URL written for psql means the same here.
    public enum TLSMode: String, Sendable, CaseIterable {
        /// Plain TCP (a database on loopback or a private network).
        case disable
        /// TLS when the server offers it, the certificate not verified.
        case prefer
        /// TLS or no connection, the certificate not verified.
        case require
        /// TLS or no connection, the certificate verified against the system's
        /// trust store and the host name (`verify-ca` is taken as this, stricter).
        case verifyFull = "verify-full"
    }

    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var database: String
    public var tls: TLSMode

    /// `password` (from `storage.passwordEnv`) is used when the URL has none.
    public init(_ text: String, password fallback: String? = nil) throws {
        guard let c = URLComponents(string: text), ["postgres", "postgresql"].contains(c.scheme ?? "") else {
            throw PostgresStoreError.badURL("storage.url must look like postgres://user@host:5432/database")
        }
        guard let host = c.host, !host.isEmpty else { throw PostgresStoreError.badURL("storage.url names no host") }
        guard let user = c.user, !user.isEmpty else { throw PostgresStoreError.badURL("storage.url names no user (postgres://USER@host/database)") }
        let database = String(c.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty else { throw PostgresStoreError.badURL("storage.url names no database (postgres://user@host/DATABASE)") }
        self.host = host
        self.port = c.port ?? 5432
        // URLComponents has decoded them already: decoding again would turn a
        // password's "%41" into "A".
        self.user = user
        self.password = c.password ?? fallback
        self.database = database
        var tls = TLSMode.prefer
        for item in c.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                let mode = item.value == "verify-ca" ? "verify-full" : item.value ?? ""
                guard let m = TLSMode(rawValue: mode) else {
                    throw PostgresStoreError.badURL("storage.url: sslmode must be one of disable, prefer, require, verify-ca, verify-full")
                }
                tls = m
            default:
                throw PostgresStoreError.badURL("storage.url: unknown parameter \(item.name) (only sslmode is understood)")
            }
        }
        self.tls = tls
    }

    /// The address without its password, for messages and the audit log.
    public var redacted: String { "postgres://\(user)@\(host.contains(":") ? "[\(host)]" : host):\(port)/\(database)" }

    /// Encrypted, not authenticated: what libpq's `prefer` and `require` do.
    static var unverified: TLSConfiguration {
        var c = TLSConfiguration.makeClientConfiguration()
        c.certificateVerification = .none
        return c
    }

    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        let tls: PostgresConnection.Configuration.TLS = switch self.tls {
        case .disable: .disable
        case .prefer: .prefer(try NIOSSLContext(configuration: Self.unverified))
        case .require: .require(try NIOSSLContext(configuration: Self.unverified))
        case .verifyFull: .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
        var config = PostgresConnection.Configuration(host: host, port: port, username: user, password: password, database: database, tls: tls)
        config.options.additionalStartupParameters = Self.sessionSettings
        return config
    }

    /// A session cut off from its gateway (a network partition: no FIN ever
    /// arrives) would otherwise hold its locks, the audit chain's head among
    /// them, until TCP keepalive gives up, hours later; bodies never sit idle
    /// inside a transaction, so the server may end such a session after 15 s.
    static let sessionSettings = [("idle_in_transaction_session_timeout", "15s")]

    func clientConfiguration() throws -> PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS = switch self.tls {
        case .disable: .disable
        case .prefer: .prefer(Self.unverified)
        case .require: .require(Self.unverified)
        case .verifyFull: .require(.makeClientConfiguration())
        }
        var config = PostgresClient.Configuration(host: host, port: port, username: user, password: password, database: database, tls: tls)
        config.options.additionalStartupParameters = Self.sessionSettings
        return config
    }
}
