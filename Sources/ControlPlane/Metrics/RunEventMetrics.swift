import Foundation
import Wire
import Synchronization
import Workflow

/// Run and step metrics, derived from committed run events (each passes
/// `RunEventHub.publish` once): what a scrape counts is what a replay shows.
///
/// `step.finished` and `step.failed` carry no kind, so a step's kind and start
/// are kept from its `step.started` until it ends, and a run's leftovers are
/// dropped with its terminal event. The table is capped besides: a step
/// started past the cap is not timed, rather than memory growing.
final class RunEventMetrics: Sendable {
    static let shared = RunEventMetrics()
    static let maxOpenSteps = 50_000

    private struct Open {
        var byRun: [String: [String: (kind: String, at: Date)]] = [:]
        var count = 0

        mutating func remove(run: String, step: String) -> (kind: String, at: Date)? {
            guard let started = byRun[run]?.removeValue(forKey: step) else { return nil }
            count -= 1
            if byRun[run]?.isEmpty == true { byRun[run] = nil }
            return started
        }

        mutating func remove(run: String) {
            count -= byRun.removeValue(forKey: run)?.count ?? 0
        }
    }

    private let open = Mutex(Open())
    private let metrics: GatewayMetrics

    init(metrics: GatewayMetrics = .shared) {
        self.metrics = metrics
    }

    /// Steps started and not yet ended (for tests of the bound).
    var openSteps: Int { open.withLock { $0.count } }

    func observe(_ event: RunEvent) {
        guard let type = RunEventType(rawValue: event.type) else { return }
        switch type {
        case .runStarted:
            metrics.runsStarted.increment()
        case .runResumed:
            metrics.runsResumed.increment()
        case .runSucceeded, .runFailed, .runCancelled:
            metrics.runsFinished[String(event.type.dropFirst("run.".count))]?.increment()
            open.withLock { $0.remove(run: event.runId) }
        case .stepStarted:
            guard let step = event.step else { return }
            let claimed = event.data?["kind"]?.stringValue ?? "unknown"
            // The kind is the worker's word: a label value outside the set would be a new series.
            let kind = GatewayMetrics.stepKinds.contains(claimed) ? claimed : "unknown"
            open.withLock { o in
                if o.byRun[event.runId]?[step] == nil {
                    guard o.count < Self.maxOpenSteps else { return }
                    o.count += 1
                }
                o.byRun[event.runId, default: [:]][step] = (kind, event.at)
            }
        case .stepFinished, .stepFailed:
            guard let step = event.step, let started = open.withLock({ $0.remove(run: event.runId, step: step) }) else { return }
            let outcome = type == .stepFinished ? "succeeded" : "failed"
            metrics.stepDurations[started.kind]?[outcome]?.recordMilliseconds(Self.durationMs(event, since: started.at))
        case .runQueued, .runWaiting, .stepSkipped, .stepBranch, .stepParked, .inferDelta, .childStarted,
             .agentMessage, .agentThought, .agentToolCall, .agentPlan, .agentRequest, .permissionDenied, .mcpCall:
            break
        }
    }

    /// The worker measures a step's own time (`data.durationMs`); an approval's
    /// end is the gateway's (a decision), timed from its start event.
    static func durationMs(_ event: RunEvent, since start: Date) -> Double {
        if case let .number(ms)? = event.data?["durationMs"], ms.isFinite, ms >= 0 { return ms }
        return max(0, event.at.timeIntervalSince(start) * 1000)
    }
}
