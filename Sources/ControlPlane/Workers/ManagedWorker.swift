import CSandbox
import Foundation
import Sandbox
import Synchronization
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// The control plane's record of one worker process, from spawn to reaping.
final class ManagedWorker: Sendable {
    let pid: Int32
    let uid: UInt32
    /// Which worker template forked it; nil when the pool exec'd it (then it is
    /// our child, and we reap it ourselves).
    let templateGeneration: Int?
    let spawnedAt = Date()

    private struct State {
        var phase: WorkerMonitor.Phase = .handshaking
        var jobId: String?
        var report: SandboxReport?
        var peer: RPCPeer?
        var exit: ExitStatus?
        var exitWaiters: [CheckedContinuation<ExitStatus, Never>] = []
        var helloWaiter: CheckedContinuation<SandboxReport, any Error>?
        var helloError: (any Error)?
        /// Why we killed it, when we did: a protocol violation, a cancel, a timeout.
        var killReason: String?
        var killCause: KillCause?
        /// The first kill's cause, for the exit metric.
        var exitCause: WorkerExitCause?
        /// An operator asked it be retired: never handed a job, or exits after its one.
        var draining = false
        var events = 0
        var eventBudget = WorkerMonitor.maxEventsPerJob
        /// Signals go through it when the worker is not our child (pid reuse).
        var pidfd: Int32 = -1
        /// Where this job's events go; set when the job is handed over.
        var sink: (@Sendable (JobEvent) async -> Void)?
        /// Answers the job's requests (`secret.resolve`); set when the job is handed over.
        var requests: (@Sendable (RPCIncoming) async -> RPCReply)?
    }

    private let state = Mutex(State())

    init(pid: Int32, uid: UInt32, pidfd: Int32 = -1, templateGeneration: Int? = nil) {
        self.pid = pid
        self.uid = uid
        self.templateGeneration = templateGeneration
        state.withLock { $0.pidfd = pidfd }
    }

    var phase: WorkerMonitor.Phase { state.withLock { $0.phase } }
    var jobId: String? { state.withLock { $0.jobId } }
    var report: SandboxReport? { state.withLock { $0.report } }
    var peer: RPCPeer? { state.withLock { $0.peer } }
    var killReason: String? { state.withLock { $0.killReason } }
    var killCause: KillCause? { state.withLock { $0.killCause } }
    var exitCause: WorkerExitCause? { state.withLock { $0.exitCause } }
    var draining: Bool { state.withLock { $0.draining } }
    func markDraining() { state.withLock { $0.draining = true } }
    var hasExited: Bool { state.withLock { $0.exit != nil } }

    func attach(_ peer: RPCPeer) { state.withLock { $0.peer = peer } }

    /// Exited, even if its channel's end or its reaping has not been seen yet.
    var processExited: Bool {
        state.withLock { s in s.exit != nil || sk_process_exited(pid, s.pidfd) == 1 }
    }

    var requestHandler: (@Sendable (RPCIncoming) async -> RPCReply)? {
        get { state.withLock { $0.requests } }
        set { state.withLock { $0.requests = newValue } }
    }

    var eventSink: (@Sendable (JobEvent) async -> Void)? {
        get { state.withLock { $0.sink } }
        set { state.withLock { $0.sink = newValue } }
    }

    func setPhase(_ phase: WorkerMonitor.Phase, jobId: String? = nil) {
        state.withLock {
            $0.phase = phase
            if let jobId { $0.jobId = jobId }
        }
    }

    /// Counts an event; false once the job has sent more than it may.
    func countEvent() -> Bool {
        state.withLock {
            $0.events += 1
            return $0.events <= $0.eventBudget
        }
    }

    /// A job that lives long (a resident agent's host) is bounded per turn by
    /// the control plane instead of per job.
    func setEventBudget(_ budget: Int) { state.withLock { $0.eventBudget = budget } }

    // MARK: Handshake

    /// False when the worker is past its handshake: a second hello (both read
    /// before either was handled) is refused here, under the same lock that
    /// ends the handshake.
    func helloAccepted(_ report: SandboxReport) -> Bool {
        let (accepted, waiter) = state.withLock { s -> (Bool, CheckedContinuation<SandboxReport, any Error>?) in
            guard s.phase == .handshaking else { return (false, nil) }
            s.report = report
            s.phase = .idle
            defer { s.helloWaiter = nil }
            return (true, s.helloWaiter)
        }
        waiter?.resume(returning: report)
        return accepted
    }

    func helloFailed(_ error: any Error) {
        let waiter = state.withLock { s -> CheckedContinuation<SandboxReport, any Error>? in
            if s.helloError == nil { s.helloError = error }
            defer { s.helloWaiter = nil }
            return s.helloWaiter
        }
        waiter?.resume(throwing: error)
    }

    func waitForHello() async throws -> SandboxReport {
        try await withCheckedThrowingContinuation { cont in
            let ready = state.withLock { s -> Result<SandboxReport, any Error>? in
                if let report = s.report, s.phase != .handshaking { return .success(report) }
                if let error = s.helloError { return .failure(error) }
                s.helloWaiter = cont
                return nil
            }
            if let ready { cont.resume(with: ready) }
        }
    }

    // MARK: Lifecycle

    /// SIGKILL, once, remembering why. The pid is only signalled while unreaped
    /// (or through its pidfd), so a recycled pid is never hit.
    func kill(reason: String, cause: KillCause? = nil, exit: WorkerExitCause? = nil) {
        state.withLock { s in
            if s.killReason == nil {
                s.killReason = reason
                s.killCause = cause
                s.exitCause = exit ?? cause?.exitCause ?? .killed
            }
            guard s.exit == nil else { return }
            if s.pidfd >= 0 { _ = sk_pidfd_kill(s.pidfd) } else { Glibc.kill(pid, SIGKILL) }
        }
        peer?.close()
    }

    func markExited(_ status: ExitStatus) {
        let (waiters, hello) = state.withLock { s -> ([CheckedContinuation<ExitStatus, Never>], CheckedContinuation<SandboxReport, any Error>?) in
            s.exit = status
            if s.pidfd >= 0 {
                close(s.pidfd)
                s.pidfd = -1
            }
            defer {
                s.exitWaiters.removeAll()
                s.helloWaiter = nil
            }
            return (s.exitWaiters, s.helloWaiter)
        }
        waiters.forEach { $0.resume(returning: status) }
        hello?.resume(throwing: WorkerFailure.diedDuringHandshake(killReason ?? status.description))
    }

    func waitForExit() async -> ExitStatus {
        await withCheckedContinuation { cont in
            let done = state.withLock { s -> ExitStatus? in
                if let exit = s.exit { return exit }
                s.exitWaiters.append(cont)
                return nil
            }
            if let done { cont.resume(returning: done) }
        }
    }
}

/// Why a worker could not be used.
public enum WorkerFailure: Error, CustomStringConvertible, Sendable {
    case diedDuringHandshake(String)
    case refused(String)
    case spawnFailed(String)
    case poolStopped

    public var description: String {
        switch self {
        case let .diedDuringHandshake(why): "worker died before its handshake: \(why)"
        case let .refused(why): "worker refused: \(why)"
        case let .spawnFailed(why): why
        case .poolStopped: "the worker pool is shutting down"
        }
    }
}
