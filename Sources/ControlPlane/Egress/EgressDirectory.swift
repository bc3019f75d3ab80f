import Foundation
import Synchronization
import Workflow

/// What the egress proxy needs to know about a running job, registered by the
/// run service for as long as the job runs: whose run it is, each step's
/// policy, and which steps are running right now. Read from the proxy's
/// blocking threads, hence a lock, not an actor.
public final class EgressDirectory: Sendable {
    public struct Job: Sendable {
        public var runId: String
        public var workflow: String
        public var policies: [String: StepPolicy]
        /// Step paths between their `step.started` and their end, as the run
        /// service persisted them: a connection may speak for these only.
        var running: [String: Int] = [:]
    }

    private let jobs = Mutex<[String: Job]>([:])

    public init() {}

    func register(jobId: String, _ job: Job) { jobs.withLock { $0[jobId] = job } }
    func remove(jobId: String) { _ = jobs.withLock { $0.removeValue(forKey: jobId) } }
    func job(_ id: String) -> Job? { jobs.withLock { $0[id] } }

    /// Follows a job's step events: the proxy accepts a step only while it runs.
    func observe(jobId: String, type: String, step: String?) {
        guard let step else { return }
        jobs.withLock { all in
            switch type {
            case "step.started": all[jobId]?.running[step, default: 0] += 1
            case "step.finished", "step.failed", "step.skipped", "step.parked":
                guard let n = all[jobId]?.running[step] else { return }
                all[jobId]?.running[step] = n > 1 ? n - 1 : nil
            default: return
            }
        }
    }

    /// Whether `step` runs in `jobId`, waiting up to `limit` for its start: a
    /// step's first connection can reach the proxy before the worker's
    /// `step.started` has been handled.
    func waitUntilRunning(jobId: String, step: String, limit: Duration) -> Bool {
        let deadline = ContinuousClock.now + limit
        while true {
            let state: Bool? = jobs.withLock { all in
                guard let job = all[jobId] else { return false }
                return job.running[step] != nil ? true : nil
            }
            if let state { return state }
            if ContinuousClock.now >= deadline { return false }
            Thread.sleep(forTimeInterval: 0.005)
        }
    }
}
