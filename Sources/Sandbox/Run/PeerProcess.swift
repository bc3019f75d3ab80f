import Foundation
import CSandbox
import Synchronization
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// A program a step talks to over its stdio while it runs (an agent, an MCP
/// server, a terminal the agent asked for), started under the step's Landlock
/// layer and rlimits, in a process group of its own. Reaped by a thread of
/// its own; `kill` takes the whole group.
public final class PeerProcess: Sendable {
    public let pid: pid_t
    /// Write end of its stdin, read ends of its stdout and stderr (-1 when
    /// merged into stdout). The caller owns them once `spawn` returns.
    public let stdin: Int32
    public let stdout: Int32
    public let stderr: Int32

    private let state = Mutex<(status: Int32?, waiters: [@Sendable (Int32) -> Void])>((nil, []))

    private init(pid: pid_t, stdin: Int32, stdout: Int32, stderr: Int32) {
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
    }

    /// Applies `ruleset` to the calling thread, then starts the program from
    /// it. Blocking and binding: call it on a thread of its own.
    public static func spawn(program: String, argv: [String], env: [String: String], cwd: String, limits: StepLimits,
                             ruleset: LandlockRuleset, mergeStderr: Bool = false) throws -> PeerProcess {
        _ = try ruleset.restrictSelf()
        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            cArgv.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var piped = sk_piped_t()
        let rc: Int32 = program.withCString { cpath in
            cwd.withCString { ccwd in
                cArgv.withUnsafeBufferPointer { av in
                    cEnv.withUnsafeBufferPointer { ev in
                        var spec = sk_run_spec_t()
                        spec.path = cpath
                        spec.argv = av.baseAddress
                        spec.envp = ev.baseAddress
                        spec.cwd = ccwd
                        spec.rlimit_as = limits.addressSpaceBytes
                        spec.rlimit_cpu = limits.cpuSeconds
                        return sk_spawn_piped(&spec, mergeStderr ? 1 : 0, &piped)
                    }
                }
            }
        }
        guard rc == 0 else { throw StepRunner.Failure(description: "could not start \(program): \(String(cString: strerror(-rc)))") }
        let process = PeerProcess(pid: piped.pid, stdin: piped.in_fd, stdout: piped.out_fd, stderr: piped.err_fd)
        process.reapInBackground()
        if piped.exec_errno != 0 {
            process.closeAll()
            throw StepRunner.Failure(description: "could not execute \(program): \(String(cString: strerror(piped.exec_errno)))")
        }
        return process
    }

    private func reapInBackground() {
        let pid = self.pid
        let started = DetachedThread.run { [self] in
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0, errno == EINTR {}
            // Whatever it left running in its group goes with it.
            _ = Glibc.kill(-pid, SIGKILL)
            let waiters = state.withLock { s -> [@Sendable (Int32) -> Void] in
                s.status = status
                defer { s.waiters = [] }
                return s.waiters
            }
            for w in waiters { w(status) }
        }
        if !started { _ = Glibc.kill(-pid, SIGKILL) }
    }

    /// The raw wait status once it has exited, else nil.
    public var exitStatus: Int32? { state.withLock { $0.status } }

    /// Calls `body` with the wait status when it exits (at once if it has).
    public func onExit(_ body: @escaping @Sendable (Int32) -> Void) {
        let done = state.withLock { s -> Int32? in
            if let status = s.status { return status }
            s.waiters.append(body)
            return nil
        }
        if let done { body(done) }
    }

    public func waitForExit() async -> Int32 {
        await withCheckedContinuation { cont in onExit { cont.resume(returning: $0) } }
    }

    /// The wait status once it has exited, waiting at most `limit`; nil if it is still running.
    public func exitStatus(within limit: Duration) async -> Int32? {
        if let status = exitStatus { return status }
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
            if let status = exitStatus { return status }
        }
        return nil
    }

    /// SIGKILL to it, its process group, and every process descended from it
    /// that is still attached to it (found through /proc), also those that
    /// made a session or group of their own (an MCP server an agent started).
    public func kill() {
        guard exitStatus == nil else { return }
        for child in Self.descendants(of: pid) { _ = Glibc.kill(child, SIGKILL) }
        _ = Glibc.kill(-pid, SIGKILL)
        _ = Glibc.kill(pid, SIGKILL)
    }

    /// Every live process under `root`, by the parent links in /proc/<pid>/stat.
    static func descendants(of root: pid_t) -> [pid_t] {
        var children: [pid_t: [pid_t]] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let p = pid_t(name), let stat = try? String(contentsOfFile: "/proc/\(name)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            // `pid (comm) state ppid …`: comm may hold spaces and parentheses.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 1, let ppid = pid_t(fields[1]) else { continue }
            children[ppid, default: []].append(p)
        }
        var out: [pid_t] = []
        var queue = [root]
        while let next = queue.popLast() {
            for c in children[next] ?? [] where !out.contains(c) {
                out.append(c)
                queue.append(c)
            }
        }
        return out
    }

    /// A program that reads nothing from us sees end-of-file at once.
    public func closeStdin() {
        if stdin >= 0 { close(stdin) }
    }

    /// The stdio ends the caller did not hand elsewhere.
    public func closeAll() {
        for fd in [stdin, stdout, stderr] where fd >= 0 { close(fd) }
    }

    /// `exited with status 3`, `killed by SIGKILL`.
    public static func describe(_ status: Int32) -> String { ExitStatus(waitStatus: status).description }
}
