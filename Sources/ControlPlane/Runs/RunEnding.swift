import Synchronization
import Workflow

/// One caller's wait for a run's end (a sync `POST /runs`), resumed by the
/// run service with the record read in the transaction that ended the run,
/// or with nil (it parked, the gateway is stopping, its end could not be
/// recorded): the caller then reads the run itself.
///
/// A sync submit hands one to the run service, which registers it in the
/// same actor turn that queues or starts the run, so no end can come
/// between the two and nothing needs to ask the store whether the run is
/// still going.
public final class RunEnding: Sendable {
    private enum State {
        case waiting(CheckedContinuation<RunRecord?, Never>?)
        case ended(RunRecord?)
    }
    private let state = Mutex(State.waiting(nil))

    public init() {}

    func resume(_ record: RunRecord?) {
        let waiting = state.withLock { s -> CheckedContinuation<RunRecord?, Never>? in
            guard case let .waiting(c) = s else { return nil }
            s = .ended(record)
            return c
        }
        waiting?.resume(returning: record)
    }

    /// The ended run's record, once it has ended or parked.
    public var record: RunRecord? {
        get async {
            await withCheckedContinuation { c in
                let ended = state.withLock { s -> RunRecord?? in
                    if case let .ended(r) = s { return .some(r) }
                    s = .waiting(c)
                    return nil
                }
                if let ended { c.resume(returning: ended) }
            }
        }
    }
}
