import GRDB
import Synchronization

/// Commits the writes of concurrent runs together. While one transaction
/// commits (and, with `storage.durability: full`, fsyncs), the writes that
/// arrive wait; the next transaction takes all of them, each in a savepoint of
/// its own, so one that fails is rolled back alone. No write is answered
/// before the commit that holds it is durable, and a write that arrives while
/// nothing commits starts at once: one run alone waits for nobody. The audit
/// log commits the same way (`AuditLog`). GRDB serializes writes but commits
/// each on its own; batching them is ours.
final class GroupCommit: Sendable {
    /// One write: runs inside the batch's transaction and hands back how to
    /// answer its caller once that transaction has committed.
    private struct Item: Sendable {
        let run: @Sendable (Database) -> @Sendable () -> Void
        let fail: @Sendable (any Error) -> Void
    }

    private struct State {
        var queue: [Item] = []
        var committing = false
    }

    private let pool: DatabasePool
    private let state = Mutex(State())
    /// More than this many writes wait for the next transaction.
    static let maxBatch = 256

    init(_ pool: DatabasePool) { self.pool = pool }

    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, any Error>) in
            let item = Item(run: { db in
                do {
                    var value: T?
                    try db.inSavepoint {
                        value = try body(db)
                        return .commit
                    }
                    let result = value!
                    return { cont.resume(returning: result) }
                } catch {
                    return { cont.resume(throwing: error) }
                }
            }, fail: { cont.resume(throwing: $0) })
            let start = state.withLock { s -> Bool in
                s.queue.append(item)
                guard !s.committing else { return false }
                s.committing = true
                return true
            }
            if start { Task { await self.commitAll() } }
        }
    }

    /// Commits batches until nothing waits.
    private func commitAll() async {
        while true {
            let batch = state.withLock { s -> [Item] in
                let taken = Array(s.queue.prefix(Self.maxBatch))
                s.queue.removeFirst(taken.count)
                if taken.isEmpty { s.committing = false }
                return taken
            }
            if batch.isEmpty { return }
            do {
                let answers = try await pool.write { db in batch.map { $0.run(db) } }
                for answer in answers { answer() }
            } catch {
                // The transaction itself failed (a full disk, an I/O error): none of it holds.
                for item in batch { item.fail(error) }
            }
        }
    }
}
