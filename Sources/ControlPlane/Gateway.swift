import Foundation
import Logging
import NIOCore
import NIOPosix
import Sandbox
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// The control plane: owns the state directory and the worker pool.
public final class Gateway: Sendable {
    public let config: GatewayConfig
    public let configPath: String?
    public let stateDir: String
    public let pool: WorkerPool
    public let group: any EventLoopGroup
    let logger: Logger

    /// Builds everything that does not yet run anything: state dir, spawner, pool.
    public init(loaded: ConfigLoader.Loaded, logger: Logger = Logger(label: "skelm.gateway"),
                group: any EventLoopGroup = MultiThreadedEventLoopGroup(numberOfThreads: 2)) throws {
        self.config = loaded.config
        self.configPath = loaded.path
        self.stateDir = loaded.stateDir
        self.logger = logger
        self.group = group
        try Self.prepareStateDir(stateDir)
        let root = geteuid() == 0
        let host = HostSupport.probe()
        let poolConfig = loaded.config.poolConfiguration(stateDir: stateDir, runningAsRoot: root)
        try WorkerPool.prepareWorkspaceRoot(poolConfig.workspaceRoot)
        let spawner = try WorkerSpawner(namespaces: host.namespaces, uidBase: poolConfig.uidBase)
        self.pool = WorkerPool(configuration: poolConfig, spawner: spawner, group: group, logger: logger,
                               onEvent: { event in logger.debug("job event", metadata: ["job": "\(event.jobId)", "type": "\(event.type)"]) },
                               onViolation: { pid, what in logger.warning("sandbox.violation", metadata: ["pid": "\(pid)", "what": "\(what)"]) })
    }

    public func start() async throws {
        try await pool.start()
        let counts = await pool.counts
        logger.info("gateway started", metadata: ["stateDir": "\(stateDir)", "workers": "\(counts.live)"])
    }

    /// Drains: no new jobs, running ones get `drain` to finish, then everything stops.
    public func stop(drain: Duration = .seconds(30)) async {
        await pool.shutdown(drain: drain)
        try? await group.shutdownGracefully()
        logger.info("gateway stopped")
    }

    /// 0711: worker uids may traverse it to reach their workspace, but cannot list it;
    /// everything else the gateway keeps here is created 0600/0700.
    static func prepareStateDir(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        guard chmod(path, 0o711) == 0 else {
            throw ConfigError(file: path, line: nil, keyPath: "stateDir", message: "chmod failed: \(String(cString: strerror(errno)))")
        }
    }
}
