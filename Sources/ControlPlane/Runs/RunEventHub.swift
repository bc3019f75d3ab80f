import Foundation
import Synchronization

/// Live fan-out of persisted run events to SSE subscribers. Events reach it only
/// after they are committed, so a subscriber never sees what a replay would not.
public final class RunEventHub: Sendable {
    private let subscribers = Mutex<[String: [UUID: AsyncStream<RunEvent>.Continuation]]>([:])

    /// The hub is the first part a gateway builds: swift-metrics is bootstrapped
    /// here, before anything else of the process makes an instrument.
    public init() {
        MetricsBootstrap.ensure()
    }

    /// Subscribe before replaying from the store, then skip what the replay sent:
    /// nothing falls in the gap between the two.
    public func subscribe(runId: String) -> (id: UUID, events: AsyncStream<RunEvent>) {
        let id = UUID()
        let (stream, continuation) = AsyncStream<RunEvent>.makeStream(bufferingPolicy: .bufferingNewest(10_000))
        subscribers.withLock { $0[runId, default: [:]][id] = continuation }
        continuation.onTermination = { [weak self] _ in self?.unsubscribe(runId: runId, id: id) }
        return (id, stream)
    }

    public func unsubscribe(runId: String, id: UUID) {
        subscribers.withLock { subs in
            subs[runId]?[id] = nil
            if subs[runId]?.isEmpty == true { subs[runId] = nil }
        }
    }

    public func publish(_ event: RunEvent) {
        RunEventMetrics.shared.observe(event)
        deliver(event)
    }

    /// An event another gateway of the fleet committed (and counted): to this
    /// gateway's followers of the run only.
    public func relay(_ event: RunEvent) { deliver(event) }

    private func deliver(_ event: RunEvent) {
        let targets = subscribers.withLock { subs -> [AsyncStream<RunEvent>.Continuation] in
            let list = Array(subs[event.runId]?.values ?? [:].values)
            if event.isTerminal { subs[event.runId] = nil }
            return list
        }
        for c in targets {
            c.yield(event)
            if event.isTerminal { c.finish() }
        }
    }

    /// Ends every stream (the gateway is stopping): SSE clients see the connection
    /// close and reconnect with Last-Event-ID to the next gateway.
    public func closeAll() {
        let all = subscribers.withLock { subs -> [AsyncStream<RunEvent>.Continuation] in
            defer { subs.removeAll() }
            return subs.values.flatMap(\.values)
        }
        all.forEach { $0.finish() }
    }

    /// Whether anyone here follows the run (a relayed event is read only then).
    public func follows(_ runId: String) -> Bool { subscribers.withLock { $0[runId] != nil } }

    /// Every run someone here follows.
    public var followedRuns: [String] { subscribers.withLock { Array($0.keys) } }

    public var subscriberCount: Int { subscribers.withLock { $0.values.reduce(0) { $0 + $1.count } } }
}
