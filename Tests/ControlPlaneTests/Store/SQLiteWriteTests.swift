@testable import ControlPlane
import Foundation
import GRDB
import Testing

/// What each caller of the SQLite store's writes is told matches what the
/// file holds: a write reported done is there, one that failed left nothing.
@Suite("SQLite store writes")
struct SQLiteWriteTests {
    static func engine() throws -> (SQLiteEngine, String) {
        let dir = try StoreScratch.directory("writes")
        let engine = try SQLiteEngine(path: dir + "/skelm.db", durability: .full)
        try engine.pool.write { db in try db.execute(sql: "CREATE TABLE t (n INTEGER PRIMARY KEY, body BLOB)") }
        return (engine, dir)
    }

    static func stored(_ engine: SQLiteEngine) async throws -> Set<Int> {
        Set(try await engine.pool.read { db in try Int.fetchAll(db, sql: "SELECT n FROM t") })
    }

    struct Refused: Error {}

    @Test("200 concurrent writes: each gets its own answer, and one that throws leaves nothing while the rest commit")
    func concurrentWrites() async throws {
        let (engine, dir) = try Self.engine()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let answers = await withTaskGroup(of: (Int, Result<Int, any Error>).self) { group in
            for n in 0..<200 {
                group.addTask {
                    do {
                        return (n, .success(try await engine.write(.brief) { db in
                            try db.execute(sql: "INSERT INTO t (n) VALUES (?)", arguments: [n])
                            // Written, then refused: its row must not survive.
                            if n % 7 == 3 { throw Refused() }
                            return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM t WHERE n = ?", arguments: [n]) ?? 0
                        }))
                    } catch {
                        return (n, .failure(error))
                    }
                }
            }
            return await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        for (n, answer) in answers {
            switch answer {
            case let .success(count): #expect(n % 7 != 3 && count == 1, "write \(n)")
            case let .failure(error): #expect(n % 7 == 3 && error is Refused, "write \(n): \(error)")
            }
        }
        #expect(try await Self.stored(engine) == Set((0..<200).filter { $0 % 7 != 3 }))
    }

    @Test("a write the full disk refuses fails; what each caller was told is what the file holds")
    func fullDisk() async throws {
        let (engine, dir) = try Self.engine()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A file that may grow by a few pages only: the large writes cannot fit.
        try await engine.pool.writeWithoutTransaction { db in
            let pages = try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0
            try db.execute(sql: "PRAGMA max_page_count = \(pages + 8)")
        }
        let answers = await withTaskGroup(of: (Int, Bool).self) { group in
            for n in 0..<100 {
                group.addTask {
                    let size = n % 10 == 5 ? 256 << 10 : 16
                    let done = (try? await engine.write(.brief) { db in
                        try db.execute(sql: "INSERT INTO t (n, body) VALUES (?, zeroblob(?))", arguments: [n, size])
                    }) != nil
                    return (n, done)
                }
            }
            return await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        let stored = try await Self.stored(engine)
        #expect(stored == Set(answers.filter(\.value).keys), "told done: \(answers.filter(\.value).keys.sorted()); stored: \(stored.sorted())")
        #expect(!stored.contains { $0 % 10 == 5 }, "a large write fit in a full file")
        // The store goes on after it.
        _ = try await engine.write(.brief) { db in try db.execute(sql: "INSERT INTO t (n) VALUES (1000)") }
        #expect(try await Self.stored(engine).contains(1000))
    }
}
