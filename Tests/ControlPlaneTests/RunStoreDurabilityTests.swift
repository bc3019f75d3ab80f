@testable import ControlPlane
import Foundation
import GRDB
import Testing

/// `storage.durability` reaches the connection that commits: with `full` every
/// commit is fsynced (SQLite's `synchronous = FULL` on the WAL writer), also on
/// SQLite builds that reset the level when a connection switches to WAL.
@Suite("Run store durability")
struct RunStoreDurabilityTests {
    @Test("durability full makes the writer fsync every commit; normal leaves it to checkpoints", arguments: [
        (RunStore.Durability.full, 2), (RunStore.Durability.normal, 1),
    ])
    func writerLevel(durability: RunStore.Durability, level: Int) async throws {
        let path = "/tmp/skelm-durability-\(UUID().uuidString.prefix(8)).db"
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let store = try RunStore(path: path, durability: durability)
        #expect(try await store.synchronousLevel() == level)
        // Opened again on a file already in WAL mode: the same.
        let again = try RunStore(path: path, durability: durability)
        #expect(try await again.synchronousLevel() == level)
    }
}

/// The run path's writes from concurrent runs commit together, and nothing is
/// lost or reordered for it.
@Suite("Run store group commit")
struct GroupCommitTests {
    final class Commits: TransactionObserver, @unchecked Sendable {
        // Safe: GRDB calls an observer only on the writer's queue, one call at a
        // time, and the test reads `count` after every write has returned.
        var count = 0
        func observes(eventsOfKind eventKind: DatabaseEventKind) -> Bool { true }
        func databaseDidChange(with event: DatabaseEvent) {}
        func databaseDidCommit(_ db: Database) { count += 1 }
        func databaseDidRollback(_ db: Database) {}
    }

    @Test("100 runs writing at once: every event kept in order, in fewer commits than writes; a write that fails is rolled back alone")
    func concurrent() async throws {
        let path = "/tmp/skelm-group-\(UUID().uuidString.prefix(8)).db"
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let store = try RunStore(path: path, durability: .full)
        let commits = Commits()
        try await store.db.write { db in db.add(transactionObserver: commits, extent: .databaseLifetime) }
        let runs = (0..<100).map { "run_\($0)" }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for id in runs {
                group.addTask {
                    _ = try await store.create(id: id, workflow: "w", input: [:], idempotencyKey: nil, requestHash: "", start: true)
                    for i in 0..<5 { _ = try await store.append(runId: id, type: .stepStarted, step: "s\(i)", data: ["attempt": 1]) }
                    _ = try await store.finish(runId: id, status: .succeeded, output: ["ok": true], error: nil)
                }
            }
            // One write that fails, among them: its caller hears why, the others hold.
            group.addTask {
                struct Refused: Error {}
                await #expect(throws: Refused.self) {
                    _ = try await store.group.write { db -> Int in
                        try db.execute(sql: "UPDATE runs SET workflow = 'changed'")
                        throw Refused()
                    }
                }
            }
            try await group.waitForAll()
        }
        for id in runs {
            let events = try await store.events(runId: id)
            #expect(events.map(\.seq) == Array(1...8), "\(id): \(events.map(\.seq))")
            #expect(events.last?.type == "run.succeeded")
            #expect(try await store.run(id)?.workflow == "w", "the failed write's change was rolled back")
        }
        let writes = runs.count * 7 + 1
        #expect(commits.count < writes, "\(commits.count) commits for \(writes) writes")
    }
}
