import Foundation
import Synchronization

/// A throwaway PostgreSQL cluster for the tests: `initdb` in a temporary
/// directory, started on a free loopback port, stopped when the test process
/// exits. Never the system's service. Each caller gets a database of its own.
public actor PostgresCluster {
    public static let shared = PostgresCluster(fsync: false)
    /// One that flushes its commits to disk, as a production server does: the
    /// benchmark's, so its PostgreSQL rows pay what its SQLite row pays.
    public static let durable = PostgresCluster(fsync: true)

    private let fsync: Bool
    /// The cluster's start, shared by every caller that comes while it runs.
    private var starting: Task<Int, any Error>?

    init(fsync: Bool) { self.fsync = fsync }
    private var databases = 0

    /// The data directories of the running clusters, for the exit hook.
    private static let running = Mutex<[String]>([])

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// A new, empty database: its URL (no password: the cluster trusts loopback).
    public func database() async throws -> String {
        if starting == nil {
            let fsync = fsync
            starting = Task { try await Self.offThread { try Self.start(fsync: fsync) } }
        }
        let port = try await runningPort()
        databases += 1
        let name = "t\(getpid())_\(databases)"
        try await Self.offThread { try Self.psql(port: port, "CREATE DATABASE \(name)") }
        return "postgres://postgres@127.0.0.1:\(port)/\(name)?sslmode=disable"
    }

    /// Runs SQL as the superuser against one database of the cluster.
    public func execute(_ sql: String, database: String) async throws {
        let port = try await runningPort()
        try await Self.offThread { try Self.psql(port: port, sql, database: database) }
    }

    /// Runs one query as the superuser and returns its rows, one per line,
    /// fields separated by `|` (psql's unaligned, tuples-only output).
    public func query(_ sql: String, database: String) async throws -> [String] {
        let port = try await runningPort()
        let out = try await Self.offThread {
            try Self.run("/usr/bin/psql", ["-h", "127.0.0.1", "-p", "\(port)", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1",
                                           "-q", "-A", "-t", "-c", sql], asRoot: false)
        }
        return out.split(separator: "\n").map(String.init)
    }

    private func runningPort() async throws -> Int {
        guard let starting else { throw Failure(description: "the cluster is not running") }
        return try await starting.value
    }

    /// Runs `body` on a thread of its own. psql, initdb and pg_ctl are waited
    /// for there: waiting on the actor would hold one of the few threads every
    /// test's tasks share (as many as there are cores), for seconds on a loaded host.
    static func offThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { cont in
            Thread { cont.resume(with: Result { try body() }) }.start()
        }
    }

    private static func start(fsync: Bool) throws -> Int {
        guard let bin = Self.binaries() else {
            throw Failure(description: "PostgreSQL's server is not installed (make deps installs it): no /usr/lib/postgresql/*/bin/initdb")
        }
        var template = Array("/tmp/skelm-pg-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw Failure(description: "mkdtemp: \(String(cString: strerror(errno)))") }
        let dir = String(cString: made)
        // PostgreSQL refuses to run as root: as root, the cluster belongs to `postgres`.
        let asRoot = geteuid() == 0
        if asRoot {
            guard let pw = getpwnam("postgres") else { throw Failure(description: "no postgres user (make deps installs PostgreSQL)") }
            chown(dir, pw.pointee.pw_uid, pw.pointee.pw_gid)
        }
        chmod(dir, 0o700)
        let data = dir + "/data"
        try Self.run(bin + "/initdb", ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"], asRoot: asRoot)
        let port = Self.freePort()
        let options = "-p \(port) -k \(dir) -c listen_addresses=127.0.0.1 -c fsync=\(fsync ? "on" : "off") -c max_connections=300 -c shared_buffers=32MB"
        try Self.run(bin + "/pg_ctl", ["-D", data, "-o", options, "-l", dir + "/log", "-w", "-t", "60", "start"], asRoot: asRoot)
        let first = Self.running.withLock { running in
            defer { running.append(data) }
            return running.isEmpty
        }
        if first {
            atexit {
                for data in PostgresCluster.running.withLock({ $0 }) {
                    guard let text = try? String(contentsOfFile: data + "/postmaster.pid", encoding: .utf8),
                          let pid = text.split(separator: "\n").first.flatMap({ Int32($0) }) else { continue }
                    // Immediate shutdown: the cluster is thrown away with its directory.
                    kill(pid, SIGQUIT)
                    for _ in 0..<100 where kill(pid, 0) == 0 { usleep(20_000) }
                    try? FileManager.default.removeItem(atPath: (data as NSString).deletingLastPathComponent)
                }
            }
        }
        return port
    }

    /// The newest installed server's programs.
    static func binaries() -> String? {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted()
        return versions.reversed().map { "\(root)/\($0)/bin" }.first { FileManager.default.isExecutableFile(atPath: $0 + "/initdb") }
    }

    static func psql(port: Int, _ sql: String, database: String = "postgres") throws {
        try run("/usr/bin/psql", ["-h", "127.0.0.1", "-p", "\(port)", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
                asRoot: false)
    }

    /// glibc's posix_spawn_file_actions_addclosefrom_np (2.34 and later), which
    /// the Glibc module does not import; looked up by name. Without it, every
    /// descriptor above 2 is marked close-on-exec in this process instead.
    private static func closeFrom3(_ actions: inout posix_spawn_file_actions_t) {
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        if let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np"),
           unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3) == 0 {
            return
        }
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            if let fd = Int32(entry), fd > 2 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        }
    }

    /// posix_spawn and waitpid rather than Foundation's Process: the server
    /// pg_ctl leaves behind keeps the process group busy, and Process did not
    /// see pg_ctl itself exit.
    @discardableResult
    static func run(_ program: String, _ arguments: [String], asRoot: Bool) throws -> String {
        let argv = asRoot ? ["/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", program] + arguments
                          : [program] + arguments
        let log = NSTemporaryDirectory() + "skelm-pg-out-" + UUID().uuidString
        defer { unlink(log) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Nothing else: the server pg_ctl leaves behind lives until the test
        // process exits, and a copy of another test's pipe or socket held that
        // long keeps its reader waiting for an end that never comes.
        closeFrom3(&actions)
        var cArgs = argv.map { strdup($0) } + [nil]
        defer { for a in cArgs { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cArgs, environ)
        guard rc == 0 else { throw Failure(description: "cannot start \(argv[0]): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        let exited = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        guard exited == 0 else {
            throw Failure(description: "\((program as NSString).lastPathComponent) exited \(exited): \(text)")
        }
        return text
    }

    /// A TCP port on 127.0.0.1 that nothing listens on now (the kernel's choice).
    public static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, len) == 0 ? getsockname(fd, sa, &len) : -1
            }
        }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}
