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

    /// A uid for a new worker: its own while it lives (see `release`).
    private func takeUID() throws(SandboxError) -> UInt32 {
        guard runningAsRoot else { return getuid() }
        guard let offset = counter.take(count: uidCount) else { throw .spawn("all \(uidCount) worker uids are held by live workers") }
        return uidBase + offset
    }

    /// The worker that held `uid` is gone: the uid may be handed out again.
    public func release(uid: UInt32) {
        guard runningAsRoot, uid >= uidBase, uid - uidBase < uidCount else { return }
        counter.release(uid - uidBase)
    }
    /// Fork workers from a warmed-up template instead of exec'ing each (root only).
    public let usesTemplate: Bool
    /// Forks one template serves before it is replaced by a fresh exec: workers
    /// forked from one template share its address-space layout.
    public let templateRecycleAfter: Int
    /// Paths a job can write, remounted noexec in each worker's mount namespace
    /// (harden.c), NUL-terminated back to back as the C side takes them.
    private let noexec: [CChar]
    private let template = Mutex<TemplateSlot>(TemplateSlot())

    private struct TemplateSlot {
        var current: WorkerTemplate?
        var generation = 0
        var handlers: WorkerTemplate.Handlers?
    }

    public init(executable: String = "/proc/self/exe", namespaces: [Namespace], uidBase: UInt32, uidCount: UInt32 = 50_000,
                template: Bool = false, templateRecycleAfter: Int = 1_000, noexecPaths: [String] = []) throws(SandboxError) {
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
        // A template forks workers into namespaces and uids of their own, which
        // takes the privileges only a root control plane has.
        self.usesTemplate = template && runningAsRoot
        self.templateRecycleAfter = max(templateRecycleAfter, 1)
        self.noexec = noexecPaths.flatMap { Array($0.utf8CString) }
    }

    deinit {
        template.withLock { $0.current?.retire() }
        close(exeFD)
        close(seccompFD)
    }

    public struct Spawned: Sendable {
        public let pid: Int32
        public let uid: UInt32
        /// Our end of the socketpair; the worker has the other as fd 3.
        public let channelFD: Int32
        /// A pidfd for the worker when a template forked it (it is the template's
        /// child, not ours), else -1. The caller owns it.
        public let pidfd: Int32
        /// Which template forked it; nil when exec'd by us.
        public let templateGeneration: Int?

        init(pid: Int32, uid: UInt32, channelFD: Int32, pidfd: Int32 = -1, templateGeneration: Int? = nil) {
            self.pid = pid
            self.uid = uid
            self.channelFD = channelFD
            self.pidfd = pidfd
            self.templateGeneration = templateGeneration
        }
    }

    /// Where a template's workers' exits go. Set before the first `spawnFromTemplate`.
    public func onTemplateEvents(exited: @escaping @Sendable (_ pid: Int32, _ status: Int32) -> Void,
                                 gone: @escaping @Sendable (_ generation: Int) -> Void) {
        template.withLock { $0.handlers = WorkerTemplate.Handlers(exited: exited, gone: gone) }
    }

    /// Forks one worker from the template, starting (or replacing) the template
    /// as needed. Same thread rule as `spawn`: the template's death signal follows
    /// the thread that started it.
    public func spawnFromTemplate(specJSON: String, logFD: Int32 = -1) throws(SandboxError) -> Spawned {
        let uid = try takeUID()
        var flags = UInt32(SK_TPL_MOUNT_PROC)
        if namespaces.contains(.net) { flags |= UInt32(SK_TPL_NET) }
        if namespaces.contains(.mount) { flags |= UInt32(SK_TPL_MOUNT) }
        if namespaces.contains(.pid) { flags |= UInt32(SK_TPL_PID) }
        if namespaces.contains(.ipc) { flags |= UInt32(SK_TPL_IPC) }
        if namespaces.contains(.uts) { flags |= UInt32(SK_TPL_UTS) }
        if runningAsRoot { flags |= UInt32(SK_TPL_DROP_UID) }
        // One retry: a template that died since the last spawn is replaced once.
        var lastError = SandboxError.spawn("worker template unavailable")
        // Whatever fails, no worker holds the uid.
        var spawnedOK = false
        defer { if !spawnedOK { release(uid: uid) } }
        for _ in 0..<2 {
            let current = try currentTemplate()
            do {
                let spawned = try current.spawn(flags: flags, uid: uid, specJSON: specJSON, noexec: noexec, logFD: logFD)
                if current.spawned >= templateRecycleAfter { retire(current) }
                spawnedOK = true
                return spawned
            } catch .templateGone(let why) {
                // Only a dead template is worth replacing; a refusal from a live one
                // (a failed set-up stage) is the answer.
                lastError = .templateGone(why)
                retire(current)
            }
        }
        throw lastError
    }

    /// How workers start, for `GET /v1/workers`.
    public struct SpawnInfo: Codable, Sendable {
        /// `template` or `exec`.
        public var mode: String
        /// The template serving new spawns now, if one is running.
        public var templatePid: Int32?
        /// How many templates have been started (one more after each recycle).
        public var templateGeneration: Int?
        /// Workers the current template has forked.
        public var templateSpawned: Int?
        public var templateRecycleAfter: Int?
    }

    public var spawnInfo: SpawnInfo {
        guard usesTemplate else { return SpawnInfo(mode: "exec") }
        let (current, generation) = template.withLock { ($0.current, $0.generation) }
        return SpawnInfo(mode: "template", templatePid: current?.pid, templateGeneration: generation,
                         templateSpawned: current?.spawned, templateRecycleAfter: templateRecycleAfter)
    }

    /// Stops the current template taking requests; it exits after its last worker.
    public func retireTemplate() {
        if let current = template.withLock({ $0.current }) { retire(current) }
    }

    private func retire(_ instance: WorkerTemplate) {
        template.withLock { if $0.current === instance { $0.current = nil } }
        instance.retire()
    }

    private func currentTemplate() throws(SandboxError) -> WorkerTemplate {
        let (existing, generation, handlers) = template.withLock { slot -> (WorkerTemplate?, Int, WorkerTemplate.Handlers?) in
            if slot.current == nil { slot.generation += 1 }
            return (slot.current, slot.generation, slot.handlers)
        }
        if let existing { return existing }
        let made = try WorkerTemplate(generation: generation,
                                      handlers: handlers ?? .init(exited: { _, _ in }, gone: { _ in })) { control, exits throws(SandboxError) in
            // The template's own messages (a failed warm-up) are for the operator:
            // its stderr is the gateway's, not the workers' log.
            try self.exec(argv: ["skelm", "worker-template"], env: ["LANG=C.UTF-8", "SKELM_WORKER_TEMPLATE=1"],
                          channelFD: control, extraFD: exits, logFD: 2, namespaces: [], dropUID: false, uid: getuid())
        }
        template.withLock { $0.current = made }
        return made
    }

    /// Spawns one worker. `logFD` becomes its stdout/stderr (or /dev/null).
    /// Must run on a thread that lives as long as the worker: PR_SET_PDEATHSIG
    /// fires when the spawning *thread* exits, not the process.
    public func spawn(arguments: [String], logFD: Int32 = -1) throws(SandboxError) -> Spawned {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw .spawn("socketpair: \(String(cString: strerror(errno)))")
        }
        defer { close(pair[1]) }
        let uid = try takeUID()
        do {
            let pid = try exec(argv: ["skelm"] + arguments, env: ["LANG=C.UTF-8"], channelFD: pair[1], extraFD: -1,
                               logFD: logFD, namespaces: namespaces, dropUID: runningAsRoot, uid: uid)
            return Spawned(pid: pid, uid: uid, channelFD: pair[0])
        } catch {
            close(pair[0])
            release(uid: uid)
            throw error
        }
    }

    /// clone into `namespaces`, optionally switch uid, and exec our own binary.
    private func exec(argv arguments: [String], env: [String], channelFD: Int32, extraFD: Int32, logFD: Int32,
                      namespaces: [Namespace], dropUID: Bool, uid: UInt32) throws(SandboxError) -> Int32 {
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = env.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var spec = sk_worker_spawn_t()
        spec.exe_fd = exeFD
        spec.channel_fd = channelFD
        spec.seccomp_fd = seccompFD
        spec.log_fd = logFD
        spec.extra_fd = extraFD
        spec.new_user_ns = namespaces.contains(.user) ? 1 : 0
        spec.new_net_ns = namespaces.contains(.net) ? 1 : 0
        spec.new_mount_ns = namespaces.contains(.mount) ? 1 : 0
        spec.new_pid_ns = namespaces.contains(.pid) ? 1 : 0
        spec.new_ipc_ns = namespaces.contains(.ipc) ? 1 : 0
        spec.new_uts_ns = namespaces.contains(.uts) ? 1 : 0
        spec.mount_proc = 1
        spec.drop_uid = dropUID ? 1 : 0
        spec.uid = uid
        spec.gid = uid
        var err = [CChar](repeating: 0, count: 256)
        // The template itself gets none: it is not a worker, and writes nothing.
        let noexec = extraFD >= 0 ? [] : self.noexec
        let pid = argv.withUnsafeBufferPointer { av in
            envp.withUnsafeBufferPointer { ev in
                noexec.withUnsafeBufferPointer { nx in
                    spec.argv = av.baseAddress
                    spec.envp = ev.baseAddress
                    spec.noexec = nx.baseAddress
                    spec.noexec_len = nx.count
                    return sk_spawn_worker(&spec, &err, err.count)
                }
            }
        }
        guard pid > 0 else { throw .spawn(String(cBuffer: err)) }
        return pid
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

/// Hands out uids from the range in turn, skipping those a live worker still
/// holds: a resident peer's worker lives for weeks while tens of thousands of
/// run workers come and go, and two live workers must never share a uid (the
/// newer could read and write the older's home and workspace).
private final class Counter: Sendable {
    private struct State {
        var next: UInt32 = 0
        var held: Set<UInt32> = []
    }
    private let state = Mutex(State())

    /// An offset in `0..<count` no live worker holds, now held; nil when all are.
    func take(count: UInt32) -> UInt32? {
        state.withLock { s in
            guard s.held.count < Int(count) else { return nil }
            while true {
                s.next &+= 1
                let offset = s.next % count
                if s.held.insert(offset).inserted { return offset }
            }
        }
    }

    func release(_ offset: UInt32) { _ = state.withLock { $0.held.remove(offset) } }
}
