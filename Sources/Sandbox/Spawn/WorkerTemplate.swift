import CSandbox
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One running worker template (`skelm worker-template`), seen from the control
/// plane: a warmed-up, single-threaded worker image that forks each new worker
/// into its own namespaces and uid (see template.c for why it is safe).
///
/// It answers spawn requests on a SOCK_SEQPACKET control socket and reports every
/// worker's exit on a pipe, because its workers are its children, not ours.
final class WorkerTemplate: Sendable {
    /// Counts templates, so exits and a template's end name which one they came from.
    let generation: Int
    let pid: Int32
    private let control: Int32
    private let spawnCount = Atomic<Int>(0)
    private let retired = Atomic<Bool>(false)

    struct Handlers: Sendable {
        /// A worker of this template exited, with its wait status.
        var exited: @Sendable (_ pid: Int32, _ status: Int32) -> Void
        /// The template is gone, and with it (PR_SET_PDEATHSIG) every worker it still had.
        var gone: @Sendable (_ generation: Int) -> Void
    }

    /// Starts a template with `start`, which must exec `skelm worker-template`
    /// with the control socket on fd 3 and the exit pipe on fd 5.
    init(generation: Int, handlers: Handlers,
         start: (_ control: Int32, _ exitPipe: Int32) throws(SandboxError) -> Int32) throws(SandboxError) {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw .spawn("worker template: socketpair: \(String(cString: strerror(errno)))")
        }
        var exits: [Int32] = [-1, -1]
        // Close-on-exec from the start would need pipe2, which Glibc's module lacks;
        // every spawn path closes fds above 5 in the child anyway.
        guard pipe(&exits) == 0, sk_set_cloexec(exits[0]) == 0, sk_set_cloexec(exits[1]) == 0 else {
            close(pair[0]); close(pair[1])
            throw .spawn("worker template: pipe: \(String(cString: strerror(errno)))")
        }
        let pid: Int32
        do {
            pid = try start(pair[1], exits[1])
        } catch {
            close(pair[0]); close(pair[1]); close(exits[0]); close(exits[1])
            throw error
        }
        close(pair[1])
        close(exits[1])
        self.generation = generation
        self.pid = pid
        self.control = pair[0]
        let exitPipe = exits[0]
        // Blocking reads on a thread of its own: at most one per live template,
        // and it ends when the template does.
        let reader = Thread {
            var child: Int32 = 0
            var status: Int32 = 0
            while sk_template_read_exit(exitPipe, &child, &status) == 0 {
                handlers.exited(child, status)
            }
            close(exitPipe)
            _ = WorkerSpawner.wait(pid: pid)
            handlers.gone(generation)
        }
        reader.name = "skelm-template-\(generation)"
        reader.start()
    }

    /// Forks one worker. Blocking: call it from the pool's spawning thread only.
    func spawn(flags: UInt32, uid: UInt32, specJSON: String, noexec: [CChar], logFD: Int32) throws(SandboxError) -> WorkerSpawner.Spawned {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw .spawn("socketpair: \(String(cString: strerror(errno)))")
        }
        defer { close(pair[1]) }
        var err = [CChar](repeating: 0, count: 256)
        var pidfd: Int32 = -1
        let pid = specJSON.utf8CString.withUnsafeBufferPointer { spec in
            noexec.withUnsafeBufferPointer { nx in
                sk_template_spawn(control, flags, uid, uid, spec.baseAddress, spec.count - 1, nx.baseAddress, nx.count,
                                  pair[1], logFD, &pidfd, &err, err.count)
            }
        }
        guard pid > 0 else {
            close(pair[0])
            throw pid == -2 ? .templateGone(String(cBuffer: err)) : .spawn(String(cBuffer: err))
        }
        spawnCount.add(1, ordering: .relaxed)
        return WorkerSpawner.Spawned(pid: pid, uid: uid, channelFD: pair[0], pidfd: pidfd, templateGeneration: generation)
    }

    var spawned: Int { spawnCount.load(ordering: .relaxed) }

    /// Takes no more requests: the template exits once its last worker has.
    func retire() {
        guard !retired.exchange(true, ordering: .relaxed) else { return }
        close(control)
    }
}
