import Foundation
import Synchronization
import Workflow

/// What the egress proxy needs to know about a running job, registered by the
/// run service for as long as the job runs: whose run it is, each step's
/// policy, and whether a step is running right now (the run service's own
/// record of the segment, not a second one). Read from the proxy's event
/// loops, which must not wait: hence a lock held for a lookup, not an actor.
public final class EgressDirectory: Sendable {
    public struct Job: Sendable {
        public var runId: String
        public var workflow: String
        public var policies: [String: StepPolicy]
        /// Which of the job's steps are between their `step.started` and their
        /// end. A connection may speak for a running step only.
        var steps: any RunningSteps
        /// Connections of this job the proxy is serving now.
        var connections = 0
        /// Denials audited at most `deniedPerSecond` a second (bursts of
        /// `deniedBurst`): a step that opens connections in a loop cannot make
        /// the gateway write thousands of fsynced entries a second.
        var denials = AuditThrottle(perSecond: EgressDirectory.deniedPerSecond, burst: EgressDirectory.deniedBurst)
    }

    static let deniedPerSecond = 10.0
    static let deniedBurst = 20

    private let jobs = Mutex<[String: Job]>([:])
    /// Denials for no known job (anyone may connect to the socket and name
    /// one) share one throttle.
    private let strangers = Mutex(AuditThrottle(perSecond: deniedPerSecond, burst: deniedBurst))
    private let audit: AuditLog?

    public init(audit: AuditLog? = nil) {
        self.audit = audit
    }

    func register(jobId: String, _ job: Job) { jobs.withLock { $0[jobId] = job } }

    /// The job ended: what its throttle left out is said once, so no count is lost.
    func remove(jobId: String) {
        guard let job = jobs.withLock({ $0.removeValue(forKey: jobId) }), job.denials.suppressed > 0 else { return }
        audit?.record(actor: "gateway", action: "egress.denied.suppressed", runId: job.runId, details: [
            "workflow": job.workflow, "count": "\(job.denials.suppressed)",
            "note": "egress.denied entries left out by the rate limit (\(Int(Self.deniedPerSecond))/s)",
        ])
    }

    func job(_ id: String) -> Job? { jobs.withLock { $0[id] } }

    /// Takes one of the job's connection slots, or says no: at most `limit` at once.
    func openConnection(jobId: String, limit: Int) -> Bool {
        jobs.withLock { all in
            guard let n = all[jobId]?.connections, n < limit else { return false }
            all[jobId]?.connections = n + 1
            return true
        }
    }

    func closeConnection(jobId: String) {
        jobs.withLock { all in
            if let n = all[jobId]?.connections, n > 0 { all[jobId]?.connections = n - 1 }
        }
    }

    /// Whether a denial of this job may be audited now; nil: not now (counted).
    /// Otherwise how many were left out before it.
    func admitDenial(jobId: String) -> Int? {
        let known: Int?? = jobs.withLock { all in
            guard all[jobId] != nil else { return .none }
            return .some(all[jobId]!.denials.admit())
        }
        if let known { return known }
        return strangers.withLock { $0.admit() }
    }

    /// Calls `resolve` with whether `step` runs in `jobId`, once that is
    /// known: a step's first connection can reach the proxy before the
    /// worker's `step.started` has been handled, and is then answered when it
    /// has. Returns the wait, for `stopWaiting`, or nil if `resolve` was
    /// called at once (false at once when there is no such job).
    func whenRunning(jobId: String, step: String, _ resolve: @escaping @Sendable (Bool) -> Void) -> Int? {
        guard let steps = jobs.withLock({ $0[jobId]?.steps }) else {
            resolve(false)
            return nil
        }
        return steps.whenRunning(step, resolve)
    }

    /// Ends a wait without resolving it; false if it was resolved already.
    func stopWaiting(jobId: String, _ wait: Int) -> Bool {
        jobs.withLock { $0[jobId]?.steps }?.stopWaiting(wait) ?? false
    }
}

/// A job's record of which of its steps run now: the run service's own
/// (`RunService.Active`), not a second one.
protocol RunningSteps: AnyObject, Sendable {
    /// True while `step` runs, nil while it has not started, false once it never will (the segment is over).
    func running(_ step: String) -> Bool?
    /// Calls `resolve` once `running(step)` is not nil; nil returned if it was so already.
    func whenRunning(_ step: String, _ resolve: @escaping @Sendable (Bool) -> Void) -> Int?
    func stopWaiting(_ wait: Int) -> Bool
}
