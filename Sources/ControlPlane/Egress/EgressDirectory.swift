import Synchronization
import Workflow

/// What the egress proxy needs to know about a running job, registered by the
/// run service for as long as the job runs: whose run it is, and each step's
/// policy. Read from the proxy's blocking threads, hence a lock, not an actor.
public final class EgressDirectory: Sendable {
    public struct Job: Sendable {
        public var runId: String
        public var workflow: String
        public var policies: [String: StepPolicy]
    }

    private let jobs = Mutex<[String: Job]>([:])

    public init() {}

    func register(jobId: String, _ job: Job) { jobs.withLock { $0[jobId] = job } }
    func remove(jobId: String) { _ = jobs.withLock { $0.removeValue(forKey: jobId) } }
    func job(_ id: String) -> Job? { jobs.withLock { $0[id] } }
}
