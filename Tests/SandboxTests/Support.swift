import ControlPlane
import Foundation
import Synchronization
import NIOPosix
import Sandbox
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// The skelm binary built next to this test bundle: tests run the real thing.
let skelmBinary: String = {
    if let override = ProcessInfo.processInfo.environment["SKELM_BIN"] { return override }
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("skelm").path
}()

/// A fresh state directory under /tmp, removed by `cleanup`.
func temporaryStateDir() -> String {
    let dir = "/tmp/skelm-test-\(UUID().uuidString.prefix(8).lowercased())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    chmod(dir, 0o711)
    return dir
}

/// A real pool spawning real sandboxed workers from the built binary.
struct TestPool {
    let pool: WorkerPool
    let stateDir: String

    /// Pools of parallel tests get uid ranges of their own, handed out in turn:
    /// two pools whose workers shared a uid would share its process limit and
    /// could signal each other's workers. A pool takes its uids in turn through
    /// its range, so a slot holds every worker a test spawns.
    static let uidSlot: UInt32 = 5_000
    private static let nextSlot = Mutex<UInt32>(0)
    /// Above every gateway test's range (GatewayTests) and the control-plane
    /// tests' harnesses (4_000_000_000 + 20M).
    static func nextUIDBase() -> UInt32 {
        4_020_000_000 + nextSlot.withLock { slot in
            defer { slot = (slot + 1) % 4_000 }
            return slot
        } * uidSlot
    }

    /// `template`: workers are forked from a worker template (as a root gateway
    /// does by default) instead of exec'd.
    /// `namespaces`: those workers get, when not all the host can make.
    static func make(minSpare: Int = 0, max: Int = 4, executable: String = skelmBinary, template: Bool = false, uidCount: UInt32 = TestPool.uidSlot,
                     namespaces: [WorkerSpawner.Namespace]? = nil,
                     configure: (inout WorkerPoolConfiguration) -> Void = { _ in }) throws -> TestPool {
        let stateDir = temporaryStateDir()
        var config = WorkerPoolConfiguration(workspaceRoot: stateDir + "/workspaces")
        config.minSpare = minSpare
        config.max = max
        config.require = WorkerPoolConfiguration.defaultRequirements(runningAsRoot: geteuid() == 0)
        config.stepLimits = StepLimits(addressSpaceBytes: 512 << 20, cpuSeconds: 20, maxOutputBytes: 64 << 10)
        config.maxProcesses = 48
        config.handshakeTimeout = .seconds(5)
        configure(&config)
        try WorkerPool.prepareWorkspaceRoot(config.workspaceRoot)
        let spawner = try WorkerSpawner(executable: executable, namespaces: namespaces ?? HostSupport.probe().namespaces,
                                        uidBase: Self.nextUIDBase(), uidCount: min(uidCount, Self.uidSlot), template: template,
                                        noexecPaths: [config.workspaceRoot])
        let pool = WorkerPool(configuration: config, spawner: spawner, group: MultiThreadedEventLoopGroup.singleton)
        return TestPool(pool: pool, stateDir: stateDir)
    }

    func run(_ argv: [String], timeoutMs: Int = 20_000, keepWorkspace: Bool = false, stdin: String? = nil) async -> JobOutcome {
        var options = WorkerPool.JobOptions()
        options.keepWorkspace = keepWorkspace
        return await pool.run(ExecSpec(argv: argv, stdin: stdin, timeoutMs: timeoutMs), options: options)
    }

    func python(_ script: String, timeoutMs: Int = 20_000, keepWorkspace: Bool = false) async -> JobOutcome {
        await run(["python3", "-c", script], timeoutMs: timeoutMs, keepWorkspace: keepWorkspace)
    }

    func cleanup() async {
        await pool.shutdown(drain: .seconds(2))
        try? FileManager.default.removeItem(atPath: stateDir)
    }
}

/// Our own children that are zombies (exited, not reaped), among `pids` when given
/// (tests run in parallel, so another test's worker may be between exit and reaping).
func zombieChildren(among pids: Set<Int32>? = nil) -> [Int32] {
    let me = getpid()
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { Int32($0) }.filter { pids?.contains($0) ?? true }.filter { pid in
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 2 && fields[0] == "Z" && Int32(fields[1]) == me
    }
}

func waitUntil(_ timeout: Duration = .seconds(10), _ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return await condition()
}
