import Sandbox
import Wire

/// How the pool sizes, confines and limits its workers.
public struct WorkerPoolConfiguration: Sendable {
    /// Workers kept sandboxed and waiting, so a run does not pay for a spawn.
    public var minSpare = 2
    /// Workers alive at once, busy or not.
    public var max = 8
    /// Job workspaces are created below it; the only tree a worker may write.
    public var workspaceRoot: String
    /// First uid of the range workers run as when the gateway runs as root.
    public var uidBase: UInt32 = 1_900_000_000
    /// Layers a worker must report, or it is refused (fail closed).
    public var require: Set<SandboxLayer> = Set(SandboxLayer.allCases)
    /// Limits for each step process.
    public var stepLimits = StepLimits()
    /// Limits for the worker (inherited by its steps).
    public var maxOpenFiles: UInt64 = 256
    public var maxFileSizeBytes: UInt64 = 1 << 30
    /// What one job's workspace and homes may hold in all, and how often that is checked.
    public var diskLimitBytes: UInt64 = 4 << 30
    public var diskLimitEntries = 100_000
    public var diskCheckInterval: Duration = .milliseconds(250)
    /// The worker process's own address space.
    public var maxAddressSpaceBytes: UInt64 = 4 << 30
    public var maxProcesses: UInt64 = 64
    /// How long a spawned worker has to sandbox itself and say hello.
    public var handshakeTimeout: Duration = .seconds(10)
    /// Where worker stdout/stderr go (-1: /dev/null).
    public var logFD: Int32 = -1
    /// The egress proxy's socket, handed to workers; nil: no network for anyone.
    public var egressSocket: String?
    /// Paths any permission ceiling grants: the workers' base layer allows them.
    public var ceilingRead: [String] = []
    public var ceilingWrite: [String] = []
    /// Arguments placed before `worker --fd 3 ...`. Empty for the skelm binary; the
    /// hostile-worker tests use it to run a script in the worker's place.
    public var workerArgumentsPrefix: [String] = []

    public init(workspaceRoot: String) {
        self.workspaceRoot = workspaceRoot
    }

    /// Layers a host cannot have when not running as root: say so rather than refuse every worker.
    public static func defaultRequirements(runningAsRoot: Bool) -> Set<SandboxLayer> {
        var all = Set(SandboxLayer.allCases)
        // Only root can set the pid namespace's vm.memfd_noexec (a global sysctl
        // file), and only root has per-worker uids for RLIMIT_NPROC.
        if !runningAsRoot {
            all.remove(.processLimit)
            all.remove(.memfd)
        }
        return all
    }
}

/// A worker as `skelm workers list` shows it.
public struct WorkerInfo: Codable, Sendable {
    public var pid: Int32
    public var uid: UInt32
    public var state: String
    public var jobId: String?
    public var ageSeconds: Double
    public var layers: [String]
}

/// Why the control plane killed a worker, when that decides how its job
/// failed: typed, so no caller reads it back out of the reason's text.
public enum KillCause: String, Codable, Sendable {
    /// It broke the wire's rules (the monitor table, a malformed frame, a flood).
    case protocolViolation
    /// Its job passed a budget the pool measures (disk, files).
    case resourceLimit
    /// Its job ran past the time it was given (the run's timeout).
    case timeout
}

/// How a job ended, from the control plane's point of view.
public struct JobOutcome: Sendable, Codable {
    public var jobId: String
    public var workerPid: Int32
    public var workspace: String
    /// The step process's result; nil when the job never produced one.
    public var result: JobResult?
    /// Why the job failed, named; nil when the step exited 0.
    public var failure: String?
    /// The job was stopped by the sandbox (seccomp SIGSYS, a protocol violation).
    public var violation: Bool
    /// Set when the pool killed the worker for one of these causes.
    public var killedFor: KillCause?
    public var sandbox: SandboxReport?

    public var succeeded: Bool { failure == nil }
}
