import Foundation

/// Where `skelm audit` reads a chain: a state dir's files (a lone gateway's
/// chain, a copy of one, or an export), or the database gateways sharing a
/// PostgreSQL store append to. Either is read without a running gateway.
public enum AuditSource: Sendable {
    case files(stateDir: String)
    case database(RunStore)

    /// `stateDir` when given; else the shared chain when the config's store is
    /// PostgreSQL, else the config's state dir.
    public static func open(_ loaded: ConfigLoader.Loaded, stateDir: String?) throws -> AuditSource {
        if let stateDir { return .files(stateDir: stateDir) }
        let storage = loaded.config.storage
        guard storage.driver == .postgres else { return .files(stateDir: loaded.stateDir) }
        let url = try storage.postgresURL(environment: ProcessInfo.processInfo.environment)
        return .database(try RunStore(postgres: url, poolSize: 2, member: "skelm-audit"))
    }

    public var description: String {
        switch self {
        case let .files(dir): dir
        case let .database(store): store.path
        }
    }

    public func query(_ filter: AuditFilter, limit: Int) async throws -> [AuditEntry] {
        switch self {
        case let .files(dir): AuditVerifier.query(stateDir: dir, filter, limit: limit)
        case let .database(store): try await SharedAuditReader.query(store.db, filter, limit: limit)
        }
    }

    /// - Parameter trusted: a `--keys` file's path: gateways' public keys kept
    ///   elsewhere, which a shared chain's checkpoints must be signed with.
    public func verify(checkpointEvery: Int?, trusted path: String? = nil) async throws -> AuditVerifier.Report {
        let trusted = try path.map(AuditBundle.trustedKeys(file:))
        return switch self {
        case let .files(dir): AuditVerifier.verify(stateDir: dir, checkpointEvery: checkpointEvery, trusted: trusted)
        case let .database(store): try await AuditVerifier.verify(database: store.db, trusted: trusted)
        }
    }

    public func export(_ filter: AuditFilter, _ body: ([AuditEntry]) async throws -> Void) async throws {
        switch self {
        case let .files(dir):
            let scanner = AuditScanner(AuditLayout(stateDir: dir), filter)
            while true {
                let page = scanner.next()
                if page.isEmpty { return }
                try await body(page)
            }
        case let .database(store): try await SharedAuditReader.export(store.db, filter, body)
        }
    }

    public func close() async {
        if case let .database(store) = self { await store.close() }
    }
}
