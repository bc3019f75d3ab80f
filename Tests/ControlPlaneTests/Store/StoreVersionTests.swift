@testable import ControlPlane
import Foundation
import PostgresFixture
import Testing

/// The schema's version and the store's durability, on both engines.
@Suite("Store versions and durability")
struct StoreVersionTests {
    /// Where a store lives, so it can be opened again.
    static func location(_ engine: Engine) async throws -> String {
        switch engine {
        case .sqlite:
            let dir = try StoreScratch.directory("version")
            return dir + "/skelm.db"
        case .postgres: return try await PostgresCluster.shared.database()
        }
    }

    static func open(_ engine: Engine, _ at: String, durability: RunStore.Durability = .full) throws -> RunStore {
        engine == .sqlite ? try RunStore(path: at, durability: durability) : try RunStore(postgres: try PostgresURL(at), poolSize: 2, durability: durability)
    }

    @Test("a store a newer gateway migrated is refused, naming its version and ours; nothing in it changes", arguments: Engine.allCases)
    func newerRefused(_ engine: Engine) async throws {
        let at = try await Self.location(engine)
        let store = try Self.open(engine, at)
        _ = try await store.create(id: "kept", workflow: "wf", input: [:], idempotencyKey: nil, requestHash: "")
        try await store.db.write { db in
            try db.execute(sql: "INSERT INTO \(StoreMigrator.table(db.dialect)) (identifier) VALUES ('99-from-the-future')")
        }
        await store.close()
        #expect {
            _ = try Self.open(engine, at)
        } throws: { error in
            let text = "\(error)"
            return text.contains("99-from-the-future") && text.contains(RunStore.migrations.last!.id) && text.contains("newer gateway")
        }
        // Opened as it is, without the refusal: the run is still there.
        try await Self.removeFuture(engine, at)
        let again = try Self.open(engine, at)
        #expect(try await again.run("kept") != nil)
        await again.close()
    }

    static func removeFuture(_ engine: Engine, _ at: String) async throws {
        switch engine {
        case .sqlite:
            let engine = try SQLiteEngine(path: at, durability: .full)
            try await engine.write { try $0.execute(sql: "DELETE FROM grdb_migrations WHERE identifier = '99-from-the-future'") }
            await engine.close()
        case .postgres:
            let name = String(at.split(separator: "/").last!.split(separator: "?").first!)
            try await PostgresCluster.shared.execute("DELETE FROM skelm_migrations WHERE identifier = '99-from-the-future'", database: name)
        }
    }

    @Test("durability full flushes every commit; normal does not wait for the flush", arguments: [Engine.sqlite, .postgres])
    func durability(_ engine: Engine) async throws {
        for (durability, level) in [(RunStore.Durability.full, 2), (.normal, 1)] {
            let store = try Self.open(engine, try await Self.location(engine), durability: durability)
            #expect(try await store.synchronousLevel() == level, "\(engine) \(durability)")
            await store.close()
        }
    }

    @Test("gateways starting together on one PostgreSQL database take turns migrating it: every one opens, each migration is applied once")
    func startTogether() async throws {
        let at = try await Self.location(.postgres)
        let stores = try await withThrowingTaskGroup(of: RunStore.self) { group in
            for _ in 0..<3 { group.addTask { try Self.open(.postgres, at) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(stores.count == 3)
        let applied = try await stores[0].db.read { db in
            try String.fetchAll(db, sql: "SELECT identifier FROM skelm_migrations ORDER BY identifier")
        }
        #expect(applied == RunStore.migrations.map(\.id).sorted())
        for store in stores { await store.close() }
    }

    @Test("storage.url: percent-escapes decoded once, libpq's sslmodes")
    func urls() throws {
        let u = try PostgresURL("postgres://sk%40lm:abc%2541@db.example:6543/runs%2Dprod?sslmode=verify-ca")
        #expect(u.user == "sk@lm" && u.password == "abc%41" && u.database == "runs-prod" && u.port == 6543 && u.tls == .verifyFull)
        #expect(u.redacted == "postgres://sk@lm@db.example:6543/runs-prod")
        #expect(try PostgresURL("postgres://u@h/d").tls == .prefer)
        #expect(try PostgresURL("postgresql://u@h/d?sslmode=require").tls == .require)
        #expect(throws: PostgresStoreError.self) { _ = try PostgresURL("postgres://u@h/d?sslmode=sometimes") }
        #expect(throws: PostgresStoreError.self) { _ = try PostgresURL("postgres://u@h/d?application_name=x") }
        #expect(throws: PostgresStoreError.self) { _ = try PostgresURL("postgres://h/d") }
    }

    @Test("a PostgreSQL that cannot be reached is a clear error at once, naming the address without its password")
    func unreachable() async throws {
        let port = PostgresCluster.freePort()
        #expect {
            _ = try RunStore(postgres: try PostgresURL("postgres://skelm@127.0.0.1:\(port)/runs?sslmode=disable", password: "hunter2"), poolSize: 1)
        } throws: { error in
            let text = "\(error)"
            return text.contains("cannot reach PostgreSQL at postgres://skelm@127.0.0.1:\(port)/runs") && !text.contains("hunter2")
        }
    }
}
