import Workflow

/// One unit of work for a single-use worker.
public struct JobSpec: Codable, Sendable {
    public var jobId: String
    /// Absolute path of the job's private directory; the only place it may write.
    public var workspace: String
    /// Extra paths the job may read / write (already resolved by the control plane).
    public var fsRead: [String]
    public var fsWrite: [String]
    public var limits: StepLimits
    public var exec: ExecSpec
    /// The step's own HOME, which is its TMPDIR too; nil: the workspace, with TMPDIR its `.tmp` (`sandbox exec`).
    public var home: String?

    public init(jobId: String, workspace: String, fsRead: [String] = [], fsWrite: [String] = [],
                limits: StepLimits = StepLimits(), exec: ExecSpec) {
        self.jobId = jobId
        self.workspace = workspace
        self.fsRead = fsRead
        self.fsWrite = fsWrite
        self.limits = limits
        self.exec = exec
    }
}

/// Limits that bind each step process (on top of the worker's own rlimits).
public struct StepLimits: Codable, Sendable, Equatable {
    public var addressSpaceBytes: UInt64
    public var cpuSeconds: UInt64
    public var maxOutputBytes: Int

    public init(addressSpaceBytes: UInt64 = 1 << 30, cpuSeconds: UInt64 = 60, maxOutputBytes: Int = 1 << 20) {
        self.addressSpaceBytes = addressSpaceBytes
        self.cpuSeconds = cpuSeconds
        self.maxOutputBytes = maxOutputBytes
    }
}

/// A program to run: argv[0] is resolved against the worker's fixed trusted PATH.
public struct ExecSpec: Codable, Sendable {
    public var argv: [String]
    public var env: [String: String]
    /// Relative to the workspace.
    public var cwd: String?
    public var stdin: String?
    public var timeoutMs: Int

    public init(argv: [String], env: [String: String] = [:], cwd: String? = nil, stdin: String? = nil, timeoutMs: Int = 60_000) {
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.stdin = stdin
        self.timeoutMs = timeoutMs
    }
}

/// How a step process ended.
public struct JobResult: Codable, Sendable, Equatable {
    public var resolvedPath: String
    public var exitCode: Int32?
    /// Set when the process was killed by a signal (31 = SIGSYS: seccomp).
    public var signal: Int32?
    public var timedOut: Bool
    public var durationMs: Double
    public var stdout: String
    public var stderr: String
    public var stdoutTruncated: Bool
    public var stderrTruncated: Bool

    public init(resolvedPath: String, exitCode: Int32?, signal: Int32?, timedOut: Bool, durationMs: Double,
                stdout: String, stderr: String, stdoutTruncated: Bool = false, stderrTruncated: Bool = false) {
        self.resolvedPath = resolvedPath
        self.exitCode = exitCode
        self.signal = signal
        self.timedOut = timedOut
        self.durationMs = durationMs
        self.stdout = stdout
        self.stderr = stderr
        self.stdoutTruncated = stdoutTruncated
        self.stderrTruncated = stderrTruncated
    }

    public var succeeded: Bool { exitCode == 0 && !timedOut }
}

/// Something a worker tells the control plane while a job runs. Step events
/// name the step by its path (`fan/2/square` inside a forEach) and carry data
/// (an output, an error, an attempt number).
public struct JobEvent: Codable, Sendable, Equatable {
    public var jobId: String
    public var type: String
    public var message: String
    public var step: String?
    public var data: JSONValue?

    public init(jobId: String, type: String, message: String = "", step: String? = nil, data: JSONValue? = nil) {
        self.jobId = jobId
        self.type = type
        self.message = message
        self.step = step
        self.data = data
    }
}
