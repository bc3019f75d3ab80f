import Synchronization

/// Whether the gateway takes work, for `GET /readyz`: a load balancer or a
/// service manager sends traffic only while it is `ready`.
public final class Readiness: Sendable {
    public enum State: Sendable, Equatable {
        /// Listening, but still resuming runs the last gateway left.
        case starting
        case ready
        /// Stopping: no new runs; running ones are given time to finish.
        case draining
    }

    private let state = Mutex(State.starting)

    public init() {}

    public var current: State { state.withLock { $0 } }

    func set(_ new: State) { state.withLock { $0 = new } }
}
