import Foundation
import GRDB
import Synchronization

/// Group commit for the SQLite store: write bodies that arrive while a
/// transaction is committing go together in the next one, each in a
/// savepoint of its own, so one commit (one fsync of the WAL, with
/// `storage.durability: full`) covers every run that wrote meanwhile. GRDB
/// commits each `write` on its own, so this is written here, on top of its
/// serialized writer.
///
/// Nothing is reported before it is durable: a body's caller hears of it only
/// after the commit that holds it, and hears that commit's error if it fails.
/// A body that throws has its savepoint rolled back and its error returned,
/// and the others commit without it. If SQLite rolled the whole transaction
/// back itself (a full disk, an I/O error), every body of the batch fails
/// with that error: none of them was committed.
final class SQLiteGroupCommit: Sendable {
    /// What to tell a body's caller once its commit is known.
    private typealias Finish = @Sendable (Result<Void, any Error>) -> Void

    private struct Pending: Sendable {
        /// Runs the body inside the batch's transaction (in a savepoint of its
        /// own when it shares the transaction with others); `failed` when it threw.
        let run: @Sendable (Database, _ savepoint: Bool) -> (finish: Finish, failed: Bool)
        /// Tells the caller its body never ran: the transaction was gone before its turn.
        let fail: @Sendable (any Error) -> Void
    }

    private struct State {
        var pending: [Pending] = []
        var committing = false
    }

    private let pool: DatabasePool
    private let state = Mutex(State())
    private let batches = Atomic(0)

    /// Transactions begun so far, each holding one batch.
    var transactions: Int { batches.load(ordering: .relaxed) }

    init(pool: DatabasePool) {
        self.pool = pool
    }

    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, any Error>) in
            let pending = Pending(run: { db, savepoint in
                do {
                    let value: T
                    if savepoint {
                        var result: T?
                        try db.inSavepoint {
                            result = try body(db)
                            return .commit
                        }
                        value = result!
                    } else {
                        value = try body(db)
                    }
                    return ({ committed in cont.resume(with: committed.map { value }) }, false)
                } catch {
                    return ({ _ in cont.resume(throwing: error) }, true)
                }
            }, fail: { cont.resume(throwing: $0) })
            let start = state.withLock { s in
                s.pending.append(pending)
                guard !s.committing else { return false }
                s.committing = true
                return true
            }
            if start { commitNext() }
        }
    }

    /// Commits what is pending, on GRDB's writer queue, batch after batch until nothing is.
    private func commitNext() {
        let batch = state.withLock { s in
            defer { s.pending.removeAll(keepingCapacity: true) }
            if s.pending.isEmpty { s.committing = false }
            return s.pending
        }
        guard !batch.isEmpty else { return }
        batches.add(1, ordering: .relaxed)
        pool.asyncWriteWithoutTransaction { [self] db in
            var finishes: [Finish] = []
            finishes.reserveCapacity(batch.count)
            // A body alone needs no savepoint: when it throws, the whole transaction is rolled back.
            let shared = batch.count > 1
            let committed = Result {
                try db.inTransaction(.immediate) {
                    for pending in batch {
                        // SQLite ended the transaction itself after an error: nothing more goes in it.
                        guard db.isInsideTransaction else { throw TransactionRolledBack() }
                        let (finish, failed) = pending.run(db, shared)
                        finishes.append(finish)
                        if failed, !shared { return .rollback }
                    }
                    return .commit
                }
            }
            for finish in finishes { finish(committed) }
            if case let .failure(error) = committed {
                for pending in batch[finishes.count...] { pending.fail(error) }
            }
            commitNext()
        }
    }
}

/// SQLite rolled a batch's transaction back on its own (after a full disk or
/// an I/O error in one of its bodies): none of the batch was committed.
struct TransactionRolledBack: Error, CustomStringConvertible {
    var description: String { "the store rolled the transaction back after an error; nothing of it was written" }
}
