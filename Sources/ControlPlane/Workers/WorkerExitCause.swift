import Sandbox

/// Why a worker's process ended, as `skelm_workers_exited_total{cause}` counts it:
/// a short fixed list, so the label never grows with kill reasons' text.
enum WorkerExitCause: String, CaseIterable, Sendable {
    /// It exited 0 on its own: the normal end of a single-use worker.
    case completed
    /// It exited non-zero or died of a signal nobody in the gateway sent.
    case crashed
    /// seccomp killed it (SIGSYS).
    case seccomp
    /// Its run was cancelled.
    case cancelled
    /// Its job passed its timeout.
    case timeout
    /// It broke the wire's rules (the monitor table, a claim, a flood).
    case protocolViolation = "protocol_violation"
    /// Its job passed a disk budget.
    case resourceLimit = "resource_limit"
    /// It never completed its handshake, or was refused there.
    case handshakeFailed = "handshake_failed"
    /// An operator drained it (`POST /v1/workers/:id/drain`).
    case drained
    /// The gateway stopped.
    case shutdown
    /// Its channel closed but its process did not exit soon after, so the pool
    /// killed it: mostly a worker slow to exit after its job on a loaded host.
    case lingered
    /// The pool killed it for another reason (a job it could not set up).
    case killed

    /// The cause of an exit: the kernel's word first (SIGSYS is seccomp whoever
    /// asked for the kill), then why the pool killed it, then how it ended.
    static func of(_ status: ExitStatus, killedFor cause: WorkerExitCause?) -> WorkerExitCause {
        if status.isSeccompViolation { return .seccomp }
        if let cause { return cause }
        return status.code == 0 ? .completed : .crashed
    }
}

extension KillCause {
    var exitCause: WorkerExitCause {
        switch self {
        case .protocolViolation: .protocolViolation
        case .resourceLimit: .resourceLimit
        case .timeout: .timeout
        }
    }
}
