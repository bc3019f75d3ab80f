import ControlPlane
import Foundation
import SkelmClient
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// `skelm gateway start --detach`: the same command again, in a session of its
/// own (no controlling terminal: closing it does not reach the gateway) with its
/// output in a log file; this process waits until that gateway answers, or dies
/// (then shows why), and returns.
enum Detach {
    /// glibc's POSIX_SPAWN_SETSID, which Swift's Glibc module does not export.
    /// Foundation's Process cannot do this: it makes the child a process group
    /// leader, and a group leader cannot start a session.
    static let spawnSetSID: Int16 = 0x80

    static func start(loaded: ConfigLoader.Loaded, logFile: String?, json: Bool) async throws {
        let log = logFile ?? loaded.stateDir + "/gateway.log"
        try FileManager.default.createDirectory(atPath: loaded.stateDir, withIntermediateDirectories: true)
        let logFD = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard logFD >= 0 else { throw CLIFailure("cannot open \(log): \(String(cString: strerror(errno)))") }
        defer { close(logFD) }
        let offset = lseek(logFD, 0, SEEK_END)

        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        // --detach, --json and --log-file belong to this process only.
        var args: [String] = [exe]
        var skipNext = false
        for a in CommandLine.arguments.dropFirst() {
            if skipNext { skipNext = false; continue }
            if a == "--detach" || a == "--json" || a.hasPrefix("--log-file=") { continue }
            if a == "--log-file" { skipNext = true; continue }
            args.append(a)
        }
        let pid = try spawn(exe, args, logFD: logFD)

        let discovery = loaded.stateDir + "/gateway.json"
        let deadline = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < deadline {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                FileHandle.standardError.write(Data(text.utf8.dropFirst(Int(max(offset, 0)))))
                throw CLIFailure("the gateway exited with status \(status >> 8 & 0xff) (log: \(log))")
            }
            if let data = FileManager.default.contents(atPath: discovery),
               let info = try? JSONDecoder().decode(Discovery.self, from: data), info.pid == pid {
                if json {
                    let fields: JSONValue = ["pid": .number(Double(info.pid)), "url": .string(info.url), "log": .string(log)]
                    print(fields.jsonText)
                } else {
                    print("gateway started: pid \(info.pid), \(info.url), log \(log)")
                }
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw CLIFailure("the gateway (pid \(pid)) did not answer within 120 s; see \(log)")
    }

    /// posix_spawn in a new session: stdin from /dev/null, stdout and stderr to
    /// the log, nothing else. Every other descriptor this process holds (the
    /// pipes of whoever started it, say) is marked close-on-exec first: a
    /// gateway holding a caller's pipe would keep that caller waiting for its end.
    static func spawn(_ exe: String, _ args: [String], logFD: Int32) throws -> pid_t {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            if let fd = Int32(entry), fd > 2 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, spawnSetSID)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, logFD, 1)
        posix_spawn_file_actions_adddup2(&actions, logFD, 2)
        let environment = ProcessInfo.processInfo.environment
        let argv = args.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, exe, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw CLIFailure("cannot start \(exe): \(String(cString: strerror(rc)))") }
        return pid
    }
}
