import CSandbox
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Starts sandboxed worker processes: clone into fresh namespaces, drop to an
/// unprivileged uid, exec the skelm binary with the channel on fd 3.
///
/// Not `Foundation.Process`: it cannot create namespaces or change uid between
/// fork and exec, and its `waitUntilExit` costs ~40 ms.
public final class WorkerSpawner: Sendable {
    public enum Namespace: String, Codable, Sendable, CaseIterable {
        case user, net, mount, pid, ipc, uts
    }

    /// An open fd of our own binary: exec'd with execveat so the worker's uid needs
    /// no search permission on the directories above it (a 0700 checkout, /root).
    private let exeFD: Int32
    /// Sealed memfd with the compiled seccomp program, shared by every worker.
    private let seccompFD: Int32
    public let namespaces: [Namespace]
    /// When the control plane runs as root, each worker gets its own uid from this
    /// range: RLIMIT_NPROC then counts only that worker, and workers cannot read
    /// each other's files.
    public let uidBase: UInt32
    public let uidCount: UInt32
    public let runningAsRoot: Bool
    private let counter = Counter()

    public init(executable: String = "/proc/self/exe", namespaces: [Namespace], uidBase: UInt32, uidCount: UInt32 = 50_000) throws(SandboxError) {
        let fd = open(executable, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .spawn("open \(executable): \(String(cString: strerror(errno)))") }
        var err = [CChar](repeating: 0, count: 256)
        let sfd = sk_seccomp_build_memfd(&err, err.count)
        guard sfd >= 0 else {
            close(fd)
            throw .seccompCompile(String(cBuffer: err))
        }
        self.exeFD = fd
        self.seccompFD = sfd
        self.runningAsRoot = geteuid() == 0
        var ns = namespaces
        if runningAsRoot { ns.removeAll { $0 == .user } } else if !ns.contains(.user), ns.contains(where: { $0 != .user }) { ns.append(.user) }
        self.namespaces = ns
        self.uidBase = uidBase
        self.uidCount = max(uidCount, 1)
    }

    deinit {
        close(exeFD)
        close(seccompFD)
    }

    public struct Spawned: Sendable {
        public let pid: Int32
        public let uid: UInt32
        /// Our end of the socketpair; the worker has the other as fd 3.
        public let channelFD: Int32
    }

    /// Spawns one worker. `logFD` becomes its stdout/stderr (or /dev/null).
    /// Must run on a thread that lives as long as the worker: PR_SET_PDEATHSIG
    /// fires when the spawning *thread* exits, not the process.
    public func spawn(arguments: [String], logFD: Int32 = -1) throws(SandboxError) -> Spawned {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw .spawn("socketpair: \(String(cString: strerror(errno)))")
        }
        let uid = runningAsRoot ? uidBase + counter.next() % uidCount : getuid()
        let argv = (["skelm"] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = [strdup("LANG=C.UTF-8"), nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
            close(pair[1])
        }
        var spec = sk_worker_spawn_t()
        spec.exe_fd = exeFD
        spec.channel_fd = pair[1]
        spec.seccomp_fd = seccompFD
        spec.log_fd = logFD
        spec.new_user_ns = namespaces.contains(.user) ? 1 : 0
        spec.new_net_ns = namespaces.contains(.net) ? 1 : 0
        spec.new_mount_ns = namespaces.contains(.mount) ? 1 : 0
        spec.new_pid_ns = namespaces.contains(.pid) ? 1 : 0
        spec.new_ipc_ns = namespaces.contains(.ipc) ? 1 : 0
        spec.new_uts_ns = namespaces.contains(.uts) ? 1 : 0
        spec.mount_proc = 1
        spec.drop_uid = runningAsRoot ? 1 : 0
        spec.uid = uid
        spec.gid = uid
        var err = [CChar](repeating: 0, count: 256)
        let pid = argv.withUnsafeBufferPointer { av in
            envp.withUnsafeBufferPointer { ev in
                spec.argv = av.baseAddress
                spec.envp = ev.baseAddress
                return sk_spawn_worker(&spec, &err, err.count)
            }
        }
        guard pid > 0 else {
            close(pair[0])
            throw .spawn(String(cBuffer: err))
        }
        return Spawned(pid: pid, uid: uid, channelFD: pair[0])
    }

    /// Blocks until `pid` exits and returns its wait status. Never reaps another child.
    public static func wait(pid: Int32) -> Int32 {
        sk_wait_pid(pid, 0)
    }

    /// The wait status if `pid` has exited, else nil.
    public static func poll(pid: Int32) -> Int32? {
        let r = sk_wait_pid(pid, 1)
        return r == -EAGAIN ? nil : r
    }
}

private final class Counter: Sendable {
    private let value = Mutex<UInt32>(0)
    func next() -> UInt32 { value.withLock { $0 &+= 1; return $0 } }
}
