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
            let dir = NSTemporaryDirectory() + "skelm-version-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
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

    @Test("a second gateway on one PostgreSQL database is refused while the first holds it, and admitted once it is gone")
    func oneGatewayPerDatabase() async throws {
        let at = try await Self.location(.postgres)
        let first = try Self.open(.postgres, at)
        #expect {
            _ = try Self.open(.postgres, at)
        } throws: { "\($0)".contains("another gateway is using the store at") }
        await first.close()
        let second = try Self.open(.postgres, at)
        await second.close()
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
