@testable import ControlPlane
import Foundation
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
