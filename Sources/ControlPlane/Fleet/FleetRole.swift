import Synchronization

/// Whether this gateway leads its fleet: the leader alone fires time-based
/// triggers (cron, interval, at), drains trigger buffers, dispatches queue
/// messages and runs poll probes. A gateway alone on its SQLite store always leads.
public final class FleetRole: Sendable {
    private let state: Mutex<(leads: Bool, watchers: [@Sendable (Bool) -> Void])>

    public init(leads: Bool) { state = Mutex((leads, [])) }

    public var leads: Bool { state.withLock { $0.leads } }

    /// Called on every change, from whichever task made it.
    public func onChange(_ watcher: @escaping @Sendable (Bool) -> Void) {
        state.withLock { $0.watchers.append(watcher) }
    }

    func set(_ leads: Bool) {
        let watchers = state.withLock { s -> [@Sendable (Bool) -> Void] in
            guard s.leads != leads else { return [] }
            s.leads = leads
            return s.watchers
        }
        for w in watchers { w(leads) }
    }
}
