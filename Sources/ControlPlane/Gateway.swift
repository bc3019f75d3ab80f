import Foundation
import Logging
import NIOCore
import NIOPosix
import Sandbox
import Synchronization
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// The control plane: owns the state directory, the run store, the workflow
/// registry, the worker pool and the HTTP API.
public final class Gateway: Sendable {
    public let config: GatewayConfig
    public let configPath: String?
    public let stateDir: String
    public let pool: WorkerPool
    public let store: RunStore
    public let registry: WorkflowRegistry
    public let runs: RunService
    /// Arms and fires every trigger and schedule.
    public let scheduler: TriggerScheduler
    public let hub = RunEventHub()
    public let audit: AuditLog
    public let group: any EventLoopGroup
    let logger: Logger
    private let server = Mutex<(HTTPServer, Task<Void, any Error>)?>(nil)
    private let expiry = Mutex<Task<Void, Never>?>(nil)
    public let egress: EgressProxy
    /// Each MCP server's tools, as listed in a sandboxed worker.
    public let tools = ToolCache()
    let authenticator: Authenticator
    /// What `GET /readyz` answers.
    public let readiness = Readiness()
    /// Whether new runs are taken (`POST /gateway/pause`, `resume`).
    public let admission: Admission
    /// Root gateways: every seccomp kill of a job's processes, from the kernel's log.
    private let seccompKills: SeccompKillWatcher?
    /// SHA-256 of the config file as last applied (start or reload).
    let configHash = Mutex("")
    /// The config in effect (see `running`): the file, and what reloads and PATCH changed.
    let effective: Mutex<GatewayConfig>
    /// One reload or patch at a time.
    let reloads = SerialGate()
    public let startedAt = Date()
    /// Held from init to the end of the process: one gateway per state dir.
    private let lock: StateLock
    /// Whether this gateway fires the time-based triggers (always, alone on SQLite).
    public let role: FleetRole
    /// Its part in the fleet, when it shares a PostgreSQL store with others.
    let fleet: Fleet?

    /// Builds everything that does not yet run anything: state dir, store, spawner, pool.
    public init(loaded: ConfigLoader.Loaded, logger: Logger = Logger(label: "skelm.gateway"),
                group: any EventLoopGroup = MultiThreadedEventLoopGroup(numberOfThreads: 2)) throws {
        self.config = loaded.config
        self.effective = Mutex(loaded.config)
        self.configPath = loaded.path
        self.stateDir = loaded.stateDir
        self.logger = logger
        self.group = group
        // Everything the gateway creates is private unless it says otherwise
        // (SQLite's -wal and -shm files, the audit files, the discovery file).
        umask(0o077)
        try Self.prepareStateDir(stateDir)
        self.lock = try StateLock(stateDir: stateDir)
        configHash.withLock { $0 = Self.hash(of: loaded.path) }
        let root = geteuid() == 0
        let host = HostSupport.probe()
        var poolConfig = loaded.config.poolConfiguration(stateDir: stateDir, runningAsRoot: root)
        let resolver = loaded.config.policyResolver(environment: ProcessInfo.processInfo.environment, configPath: loaded.path)
        // The workers' base Landlock layer allows what any ceiling grants; each step's narrows it.
        let ceiling = resolver.ceilingPaths
        for path in ceiling.read + ceiling.write where stateDir.hasPrefix(path.hasSuffix("/") ? path : path + "/") || stateDir == path || path.hasPrefix(stateDir + "/") {
            throw ConfigError(file: loaded.path ?? "config", line: nil, keyPath: "permissions",
                              message: "granting '\(path)' would expose the state directory \(stateDir) to steps")
        }
        try ControlFiles.check(loaded, workspaceRoot: poolConfig.workspaceRoot)
        poolConfig.ceilingRead = ceiling.read
        poolConfig.ceilingWrite = ceiling.write
        if root {
            poolConfig.workspaceRoot = try Self.reachableWorkspaceRoot(poolConfig.workspaceRoot, configured: config.workers.workspaceRoot != nil,
                                                                        stateDir: stateDir, file: loaded.path, logger: logger)
        }
        // Under the workspace root: the one directory workers may reach, traversable but not listable.
        poolConfig.egressSocket = poolConfig.workspaceRoot + "/.egress.sock"
        try Self.checkWorkspaceRoot(poolConfig.workspaceRoot, exists: false, file: loaded.path)
        try WorkerPool.prepareWorkspaceRoot(poolConfig.workspaceRoot)
        try Self.checkWorkspaceRoot(poolConfig.workspaceRoot, exists: true, file: loaded.path)
        if root { try Self.checkUidRange(base: poolConfig.uidBase, file: loaded.path) }
        let spawner = try WorkerSpawner(namespaces: host.namespaces, uidBase: poolConfig.uidBase,
                                        template: config.workers.spawn == .template,
                                        templateRecycleAfter: config.workers.templateRecycleAfter,
                                        noexecPaths: [poolConfig.workspaceRoot] + ceiling.write)
        let member: String
        do { member = try GatewayIdentity.resolve(configured: config.storage.gatewayId, stateDir: stateDir) } catch {
            throw ConfigError(file: stateDir + "/gateway-id", line: nil, keyPath: "storage.gatewayId", message: "cannot keep this gateway's id: \(error)")
        }
        self.store = try Self.openStore(config.storage, stateDir: stateDir, configFile: loaded.path, member: member)
        let audit: AuditLog
        do {
            // Gateways sharing a PostgreSQL store share one chain, in it; a lone gateway keeps its own in files.
            audit = try store.shared == nil
                ? AuditLog(stateDir: stateDir, checkpointEvery: loaded.config.audit.checkpointEvery, archive: loaded.config.audit.archive, logger: logger)
                : AuditLog(sharing: store, stateDir: stateDir, checkpointEvery: loaded.config.audit.checkpointEvery, logger: logger)
        } catch {
            throw ConfigError(file: stateDir + "/audit.jsonl", line: nil, keyPath: "audit", message: "cannot open the audit log: \(error)")
        }
        self.audit = audit
        // Workspaces a killed gateway left behind: no job owns them any more.
        let stale = WorkerPool.removeStaleWorkspaces(poolConfig.workspaceRoot)
        if stale > 0 {
            audit.record(actor: "gateway", action: "workspaces.cleaned", details: ["root": poolConfig.workspaceRoot, "removed": "\(stale)"])
        }
        let directory = EgressDirectory(audit: audit)
        // Each job's run and workflow, kept with its worker's uid for the kernel's late records.
        let tenancy = UIDTenancy { jobId in directory.job(jobId).map { ($0.runId, $0.workflow) } }
        self.pool = WorkerPool(configuration: poolConfig, spawner: spawner, group: group, logger: logger,
                               onEvent: { event in logger.debug("job event", metadata: ["job": "\(event.jobId)", "type": "\(event.type)"]) },
                               onViolation: { pid, what in
                                   logger.warning("sandbox.violation", metadata: ["pid": "\(pid)", "what": "\(what)"])
                                   audit.record(actor: "gateway", action: "sandbox.violation", details: ["pid": "\(pid)", "what": what])
                               },
                               onLifecycle: { action, details in audit.record(actor: "gateway", action: action, details: details) },
                               tenancy: tenancy)
        self.registry = WorkflowRegistry(dirs: loaded.workflowDirs, registration: RegistrationSettings(loaded: loaded), audit: audit, logger: logger)
        let secretStore: SecretStore
        do {
            secretStore = try SecretStore(envPrefix: config.secrets.env?.prefix, filePath: config.secrets.file?.path,
                                          environment: ProcessInfo.processInfo.environment)
        } catch {
            throw ConfigError(file: loaded.path ?? "config", line: nil, keyPath: "secrets.file.path", message: "\(error)")
        }
        let file = loaded.path ?? "config"
        let environment = ProcessInfo.processInfo.environment
        self.authenticator = try Authenticator(config: config.server, audit: audit, file: file) { token in
            if let name = token.env { return environment[name] }
            return try secretStore.value(of: token.secret ?? "")
        }
        let pool = self.pool
        self.egress = try EgressProxy(socketPath: poolConfig.egressSocket!, group: group, directory: directory, audit: audit, logger: logger,
                                      workerOf: { job in pool.assignments.withLock { $0[job] } })
        let base = UInt64(poolConfig.uidBase)
        self.seccompKills = root ? SeccompKillWatcher(audit: audit, uidRange: base..<base + 50_000) { uid, at in
            guard let at, let tenant = pool.tenancy.tenant(uid: uid, at: at) else { return nil }
            return SeccompKillWatcher.Job(runId: tenant.runId, workflow: tenant.workflow, jobId: tenant.jobId)
        } : nil
        self.admission = Admission(stateDir: stateDir)
        let requester = try StepRequester(proxy: egress, caFile: config.egress.caFile)
        self.runs = RunService(store: store, registry: registry, pool: pool, hub: hub, audit: audit, egress: directory,
                               settings: config.runSettings(policies: resolver, secrets: secretStore), admission: admission,
                               requester: requester, logger: logger)
        let authenticator = self.authenticator
        let role = FleetRole(leads: store.shared == nil)
        self.role = role
        let (store, runs, hub, admission) = (self.store, self.runs, self.hub, self.admission)
        self.fleet = store.shared.map { Fleet(store: store, engine: $0, runs: runs, hub: hub, admission: admission, role: role, logger: logger) }
        self.scheduler = TriggerScheduler(store: store, runs: runs, registry: registry, audit: audit, admission: admission, role: role, logger: logger,
                                          onHooksChanged: { paths in authenticator.publicHooks.withLock { $0 = paths } })
    }

    public var socketPath: String { stateDir + "/gateway.sock" }
    public var discoveryPath: String { stateDir + "/gateway.json" }

    /// The port the API listens on (differs from config when config says 0).
    public var port: Int? { server.withLock { $0?.0.boundPort } }

    public func start() async throws {
        try await audit.append(actor: "gateway", action: "gateway.started", details: [
            "version": SkelmVersion.string, "pid": "\(getpid())", "config": configPath ?? "(defaults)",
            "configSha256": configHash.withLock { $0 },
        ])
        let (valid, invalid) = await registry.reload()
        // The API's port is protected before any step can run (a resumed one included).
        egress.protect(port: config.server.port)
        egress.start()
        try await pool.start()
        // Pending approvals survive restarts in the store; their deadlines are checked here,
        // and now and then the runs a failed store write left running with nothing running them.
        let runs = self.runs
        expiry.withLock {
            $0 = Task {
                var swept = ContinuousClock.now
                while !Task.isCancelled {
                    await runs.expireApprovals()
                    if ContinuousClock.now - swept >= RunService.strandedSweep {
                        swept = .now
                        await runs.resumeStranded()
                    }
                    try? await Task.sleep(for: .milliseconds(500))
                }
            }
        }
        let api = API(gateway: self, runs: runs, store: store, registry: registry, pool: pool, hub: hub, audit: audit,
                      stateDir: stateDir, checkpointEvery: config.audit.checkpointEvery,
                      maxBodyBytes: config.server.maxBodyKB << 10, heartbeat: .seconds(config.server.sseHeartbeatSeconds),
                      startedAt: Date(), readiness: readiness, authenticator: authenticator)
        var httpLogger = logger
        httpLogger.logLevel = max(logger.logLevel, .notice)
        let started = try await HTTPServer.start(api: api, host: config.server.host, port: config.server.port,
                                                 socketPath: socketPath, socketGID: config.server.socketGroup.flatMap { getgrnam($0)?.pointee.gr_gid },
                                                 idleTimeout: .seconds(config.server.idleTimeoutSeconds),
                                                 maxConnections: config.server.maxConnections, logger: httpLogger)
        egress.protect(port: started.0.boundPort)
        authenticator.listening(on: started.0.boundPort)
        server.withLock { $0 = started }
        // The lease first: no other gateway takes this one's runs while it resumes them.
        try await fleet?.start(address: "http://\(config.server.host):\(started.0.boundPort)")
        try await runs.resumeUnfinished()
        await startResidents(runs.policies)
        // After the resumed runs are queued: a trigger's overlap policy sees them in flight.
        try await scheduler.start()
        let scheduler = self.scheduler
        await registry.setOnChange { scheduler.requestSync() }
        try writeDiscovery(port: started.0.boundPort)
        readiness.set(.ready)
        let counts = await pool.counts
        logger.info("gateway started", metadata: [
            "url": "http://\(config.server.host):\(started.0.boundPort)", "stateDir": "\(stateDir)",
            "workers": "\(counts.live)", "workflows": "\(valid)", "invalidWorkflows": "\(invalid)",
        ])
    }

    /// Drains: no new runs, running ones get `drain` to finish (what does not
    /// finish resumes at the next start), then everything stops.
    public func stop(drain: Duration = .seconds(30)) async {
        readiness.set(.draining)
        expiry.withLock { $0?.cancel() }
        // Each phase said at debug level: a stop that hangs shows where.
        logger.debug("stopping: the trigger scheduler")
        await scheduler.stop()
        logger.debug("stopping: draining runs")
        await runs.drain(timeout: drain)
        // The fleet takes over at once what the drain left, rather than after this gateway's lease.
        logger.debug("stopping: leaving the fleet")
        await fleet?.stop()
        logger.debug("stopping: residents, followers, listeners, workers")
        await runs.residents.stopAll()
        hub.closeAll()
        if let (http, task) = server.withLock({ $0 }) {
            await http.stop()
            _ = try? await task.value
        }
        unlink(discoveryPath)
        await pool.shutdown(drain: .seconds(1))
        egress.stop()
        seccompKills?.stop()
        logger.debug("stopping: the audit chain and the store")
        // Bounded: a chain in a database that is away must not hold the stop
        // (entries still waiting when the store closes are logged as lost).
        await audit.stopping()
        let audit = audit
        _ = await FirstOf.within(.seconds(10)) { _ = try? await audit.append(actor: "gateway", action: "gateway.stopped", details: ["pid": "\(getpid())"]) }
        _ = await FirstOf.within(.seconds(15)) { await audit.close() }
        await store.close()
        try? await group.shutdownGracefully()
        logger.info("gateway stopped")
    }

    /// Resident agents and MCP servers start (or are reconciled, after a
    /// reload) from the registry in effect.
    func startResidents(_ policies: PolicyResolver) async {
        await runs.residents.apply(policies.residents)
    }

    static func hash(of path: String?) -> String {
        path.flatMap { FileManager.default.contents(atPath: $0) }.map { AuditEntry.sha256Hex(String(decoding: $0, as: UTF8.self)) } ?? ""
    }

    /// How the CLI finds this gateway: written 0600, removed at stop.
    private func writeDiscovery(port: Int) throws {
        let host = config.server.host == "0.0.0.0" ? "127.0.0.1" : config.server.host
        let info = GatewayDiscovery(url: "http://\(host.contains(":") ? "[\(host)]" : host):\(port)", socket: socketPath,
                                    pid: getpid(), version: SkelmVersion.string, startedAt: Date().timeIntervalSince1970)
        let data = try JSONEncoder().encode(info)
        let tmp = discoveryPath + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: data, attributes: [.posixPermissions: 0o600]),
              rename(tmp, discoveryPath) == 0 else {
            throw ConfigError(file: discoveryPath, line: nil, keyPath: "stateDir", message: "cannot write the discovery file")
        }
    }

    /// Refuses to start when a live process already runs as one of this
    /// gateway's worker uids: another gateway with the same range would share
    /// its workers' file ownership and process limits, and the egress proxy's
    /// uid check would no longer tell their workers apart.
    static func checkUidRange(base: UInt32, file: String?) throws {
        let range = UInt64(base)..<UInt64(base) + 50_000
        func squatter() -> (pid: Int32, uid: UInt64)? {
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
                guard let pid = Int32(entry), pid != getpid(),
                      let status = try? String(contentsOfFile: "/proc/\(entry)/status", encoding: .utf8) else { continue }
                let lines = status.split(separator: "\n")
                // A zombie is already dead: it only waits to be reaped. One with
                // SIGKILL pending is dying: on a loaded host its exit can take a while.
                if lines.contains(where: { $0.hasPrefix("State:") && $0.contains("Z") }) { continue }
                if lines.contains(where: { Self.killPending($0) }) { continue }
                guard let line = lines.first(where: { $0.hasPrefix("Uid:") }),
                      let uid = line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first.flatMap({ UInt64($0) }),
                      range.contains(uid) else { continue }
                return (pid, uid)
            }
            return nil
        }
        // The workers of a gateway that was just killed on this state dir die
        // by their death signal, which the kernel delivers asynchronously: give
        // them a moment before calling the range taken.
        let deadline = ContinuousClock.now + .seconds(5)
        while let found = squatter() {
            if ContinuousClock.now >= deadline {
                throw ConfigError(file: file ?? "config", line: nil, keyPath: "workers.uidBase",
                                  message: "worker uids \(range.lowerBound)…\(range.upperBound - 1) are in use (pid \(found.pid) runs as uid \(found.uid): another gateway?); set workers.uidBase to a range of 50000 free uids")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// Whether a `/proc/<pid>/status` line is a pending-signal mask (`SigPnd`
    /// for the thread, `ShdPnd` for the process) with SIGKILL in it.
    static func killPending(_ line: Substring) -> Bool {
        guard line.hasPrefix("SigPnd:") || line.hasPrefix("ShdPnd:"),
              let mask = line.split(whereSeparator: { $0 == "\t" || $0 == " " }).last.flatMap({ UInt64($0, radix: 16) }) else { return false }
        return mask & (1 << (UInt64(SIGKILL) - 1)) != 0
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

/// `stateDir/gateway.json`: where a running gateway listens.
public struct GatewayDiscovery: Codable, Sendable {
    public var url: String
    public var socket: String
    public var pid: Int32
    public var version: String
    public var startedAt: Double
}
