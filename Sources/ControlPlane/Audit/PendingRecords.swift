import Synchronization

/// The `AuditLog.record` calls still on their way to the chain. Each gets a
/// ticket in call order; `settled()` waits until every ticket handed out before
/// it was called has been appended (or has failed), so a reader of the chain
/// sees what was recorded before it asked: a `403` answered, then
/// `GET /audit?action=api.denied`, finds its entry.
final class PendingRecords: Sendable {
    private struct State {
        var issued = 0
        /// Every ticket up to this one is done.
        var doneThrough = 0
        /// Done tickets above `doneThrough` (they finish out of order).
        var doneAbove: Set<Int> = []
        var waiters: [(id: Int, ticket: Int, continuation: CheckedContinuation<Void, Never>)] = []
        var nextWaiter = 0
        /// Waiters whose time ran out before they started waiting.
        var released: Set<Int> = []
    }

    private let state = Mutex(State())

    func issue() -> Int {
        state.withLock { s in
            s.issued += 1
            return s.issued
        }
    }

    func done(_ ticket: Int) {
        let ready = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.doneAbove.insert(ticket)
            while s.doneAbove.remove(s.doneThrough + 1) != nil { s.doneThrough += 1 }
            let through = s.doneThrough
            let ready = s.waiters.filter { $0.ticket <= through }.map(\.continuation)
            s.waiters.removeAll { $0.ticket <= through }
            return ready
        }
        for c in ready { c.resume() }
    }

    /// Returns once every record issued before this call is done, or after
    /// `limit` (a writer waiting on a database that is away must not hold its
    /// readers with it), or once the calling task is cancelled.
    func settled(within limit: Duration) async {
        let waiting = state.withLock { s -> (id: Int, target: Int)? in
            guard s.doneThrough < s.issued else { return nil }
            s.nextWaiter += 1
            return (s.nextWaiter, s.issued)
        }
        guard let (id, target) = waiting else { return }
        let timer = Task { [weak self] in
            guard (try? await Task.sleep(for: limit)) != nil else { return }
            self?.release(id)
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    if s.doneThrough >= target || s.released.remove(id) != nil { return true }
                    s.waiters.append((id, target, c))
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            release(id)
        }
        timer.cancel()
        await timer.value
        // A release (time out, cancellation) that came as the records settled leaves its mark behind.
        state.withLock { _ = $0.released.remove(id) }
    }

    /// Resumes waiter `id` now, or marks it so it does not start waiting.
    private func release(_ id: Int) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard let i = s.waiters.firstIndex(where: { $0.id == id }) else {
                s.released.insert(id)
                return nil
            }
            return s.waiters.remove(at: i).continuation
        }
        waiter?.resume()
    }
}
