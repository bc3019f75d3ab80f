import Foundation

/// What a worker must build around itself before it talks to anyone. The control
/// plane decides it and passes it on the worker's command line.
public struct WorkerSandboxSpec: Codable, Sendable, Equatable {
    /// Namespaces the spawner put the worker in (recorded so the worker can report them).
    public var namespaces: [String]
    /// The only directory tree the worker may write to: job workspaces live below it.
    public var workspaceRoot: String
    /// Extra read-only paths (a dynamically linked runtime's library directory,
    /// the fsRead paths config grants at most).
    public var extraReadPaths: [String]
    /// Extra writable paths: the fsWrite paths config grants at most. A step's own
    /// layer narrows them further.
    public var extraWritePaths: [String]
    public var maxOpenFiles: UInt64
    public var maxFileSizeBytes: UInt64
    /// Processes and threads the worker's uid may have at once; 0 when the uid is
    /// shared with other processes (a non-root host), where the limit would count those too.
    public var maxProcesses: UInt64
    /// Landlock TCP ports jobs may connect to.
    public var connectPorts: [UInt16]
    /// The control plane's egress proxy socket; nil: steps get no network at all.
    public var egressSocket: String?
    /// The worker's own address space (its steps lower theirs to the step limit):
    /// a job that makes the worker itself allocate without bound stops here.
    public var maxAddressSpaceBytes: UInt64 = 4 << 30

    public init(namespaces: [String], workspaceRoot: String, extraReadPaths: [String] = [], extraWritePaths: [String] = [],
                maxOpenFiles: UInt64 = 256, maxFileSizeBytes: UInt64 = 1 << 30,
                maxProcesses: UInt64 = 128, connectPorts: [UInt16] = []) {
        self.namespaces = namespaces
        self.workspaceRoot = workspaceRoot
        self.extraReadPaths = extraReadPaths
        self.extraWritePaths = extraWritePaths
        self.maxOpenFiles = maxOpenFiles
        self.maxFileSizeBytes = maxFileSizeBytes
        self.maxProcesses = maxProcesses
        self.connectPorts = connectPorts
    }
}

/// The directories every job may read and execute from. Bare program names are
/// looked up only here, never in a PATH the step sets.
public enum SystemPaths {
    public static let trustedPath = ["/usr/local/bin", "/usr/bin", "/bin"]
    public static let readOnly = ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/proc",
                                  "/dev/zero", "/dev/urandom", "/dev/random", "/dev/fd"]
    public static let readWrite = ["/dev/null", "/dev/full", "/dev/tty"]
    /// Directories of programs. A step under a policy may read (and so hand to
    /// the dynamic loader, `ld.so /usr/bin/id`) only the programs it may run.
    public static let programDirectories: Set<String> = ["/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/games", "/usr/libexec",
                                                         "/usr/local/bin", "/usr/local/sbin", "/usr/local/games", "/usr/local/libexec"]
    /// `readOnly` without the program directories: for `/usr` and
    /// `/usr/local`, each of their entries but those. Read once per process.
    public static let policyReadable: [String] = {
        func entries(_ dir: String) -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted().map { dir + "/" + $0 }
        }
        var out: [String] = []
        for path in readOnly where !programDirectories.contains(path) {
            guard path == "/usr" else { out.append(path); continue }
            for entry in entries("/usr") where !programDirectories.contains(entry) {
                if entry == "/usr/local" {
                    out += entries("/usr/local").filter { !programDirectories.contains($0) }
                } else {
                    out.append(entry)
                }
            }
        }
        return out
    }()
    /// The kernel opens an ELF program's interpreter for execution too, so a step
    /// allowed to run a dynamically linked program needs these executable.
    public static let dynamicLoaders = ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1", "/lib/ld-linux-x86-64.so.2"]
}

/// The egress path: a step's processes reach the network only through a
/// forwarder the worker runs on 127.0.0.1 inside its own network namespace,
/// which hands each connection to the control plane's proxy.
public enum Egress {
    /// One port per exec step running at once; a step's Landlock layer lets it
    /// connect to its own port only.
    public static let forwarderPorts: ClosedRange<UInt16> = 3128...3191
    /// First line a forwarder sends to the proxy: `SKELM-EGRESS <jobId> <step>`.
    public static let preamble = "SKELM-EGRESS"
}
