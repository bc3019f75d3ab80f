/// A confinement layer a worker can be under. Config's `sandbox.require` names these.
public enum SandboxLayer: String, Codable, Sendable, CaseIterable, Comparable {
    case noNewPrivs = "no_new_privs"
    case seccomp
    case landlock
    case networkNamespace = "netns"
    case mountNamespace = "mountns"
    case pidNamespace = "pidns"
    case nonRoot = "nonroot"
    case rlimits
    case processLimit = "nproc"
    case fdHygiene = "fds"
    case noexec
    case memfd

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    /// What the layer stops, for `skelm doctor` and error messages.
    public var purpose: String {
        switch self {
        case .noNewPrivs: "setuid binaries cannot raise privileges"
        case .seccomp: "escape syscalls (ptrace, mount, bpf, new user namespaces, ...) kill the process"
        case .landlock: "filesystem limited to system paths (read) and the job's workspace (write); no TCP"
        case .networkNamespace: "own network stack with only loopback: no route out"
        case .mountNamespace: "own mount table and /proc"
        case .pidNamespace: "cannot see or signal host processes; all job processes die with the worker"
        case .nonRoot: "runs as an unprivileged uid: file permissions and capabilities apply"
        case .rlimits: "address space, CPU time, open files and file size are bounded"
        case .processLimit: "a fork bomb stops at the process limit"
        case .fdHygiene: "no inherited file descriptor but its own channel"
        case .noexec: "what a job can write is mounted noexec: no running or mapping code it wrote"
        case .memfd: "memfds cannot be executed (vm.memfd_noexec = 2)"
        }
    }
}

/// What a worker reports about its own confinement, measured after applying it.
public struct SandboxReport: Codable, Sendable, Equatable {
    public var active: [SandboxLayer]
    /// Layers that could not be built, with the reason. Never silently skipped.
    public var missing: [String: String]
    public var landlockABI: Int
    public var uid: UInt32
    public var rlimits: [String: UInt64]

    public init(active: [SandboxLayer] = [], missing: [String: String] = [:], landlockABI: Int = 0,
                uid: UInt32 = 0, rlimits: [String: UInt64] = [:]) {
        self.active = active
        self.missing = missing
        self.landlockABI = landlockABI
        self.uid = uid
        self.rlimits = rlimits
    }

    public func has(_ layer: SandboxLayer) -> Bool { active.contains(layer) }
}
