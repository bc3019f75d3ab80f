import Foundation
import Wire

/// `skelm.config.yaml`, as documented key by key in docs/config.md.
public struct GatewayConfig: Codable, Sendable {
    public var server = Server()
    /// Where the gateway keeps its state. Default: `$SKELM_STATE_DIR`, else `.skelm/` next to the config.
    public var stateDir: String?
    public var workers = Workers()
    public var sandbox = Sandbox()
    public var workflows = Workflows()
    public var storage = Storage()
    public var audit = Audit()
    public var defaults = Defaults()
    public var secrets = Secrets()
    public var egress = Egress()
    /// Chat-completions endpoints `infer` steps name, by name.
    public var providers: [String: Provider] = [:]
    /// Coding agents `agent` steps may name (docs/agents.md).
    public var agents: [Agent] = []
    /// MCP servers `mcp` steps call and agents may be offered (docs/mcp.md).
    public var mcpServers: [MCPServer] = []
    public var skills = Skills()

    public struct Secrets: Codable, Sendable {
        public struct Env: Codable, Sendable { public var prefix: String }
        public struct File: Codable, Sendable { public var path: String }
        /// `secrets.NAME` is the gateway's environment variable `<prefix>NAME`.
        public var env: Env?
        /// A 0700 directory of 0600 files, or a 0600 JSON/YAML file.
        public var file: File?
        public init() {}
    }
    /// Named ceilings a workflow may choose with `permissions.profile`.
    public var permissionProfiles: [String: PermissionConfig] = [:]

    public struct Defaults: Codable, Sendable {
        /// The ceiling of every workflow that names no profile. Default-deny: a
        /// dimension left out allows nothing.
        public var permissions = PermissionConfig()
        /// Workflow ids whose steps may ask for the unrestricted bypass (`*`: all).
        public var unrestrictedGrants: [String] = []
        public init() {}
    }

    public struct Audit: Codable, Sendable {
        /// A signed checkpoint every this many entries (and one at every shutdown).
        public var checkpointEvery = 1000
        /// When the live log is sealed into a segment; nil: it grows forever.
        public var archive: Archive?
        public init() {}

        /// Rotation of `audit.jsonl` into `audit/segments/`, at a checkpoint, once
        /// either limit is passed.
        public struct Archive: Codable, Sendable {
            public var maxSegmentMB: Int?
            public var maxSegmentEntries: Int?
            public init(maxSegmentMB: Int? = nil, maxSegmentEntries: Int? = nil) {
                self.maxSegmentMB = maxSegmentMB
                self.maxSegmentEntries = maxSegmentEntries
            }
        }
    }

    public struct Server: Codable, Sendable {
        public var host = "127.0.0.1"
        public var port = 14738
        /// Runs holding a worker at once; the rest wait in the queue, in order.
        public var maxConcurrentRuns = 8
        /// Request bodies larger than this get 413.
        public var maxBodyKB = 1024
        /// Bound on a run without its own `timeout`.
        public var runTimeoutSeconds = 3600
        /// Seconds between SSE heartbeat comments on an idle event stream.
        public var sseHeartbeatSeconds = 15
        /// A connection that sends neither a complete request head nor a piece
        /// of a body for this long, and is not waiting on an answer, is closed.
        public var idleTimeoutSeconds = 60
        /// Connections each listener (TCP, the Unix socket) holds open at once;
        /// past it, new ones wait in the kernel's accept queue until one closes.
        public var maxConnections = 512
        /// What one run's events, step outputs included, may take in the store.
        public var maxRunStorageMB = 256
        /// Who may call the API over TCP (see AuthConfig).
        public var auth = AuthConfig()
        /// More names a browser-free client may send as `Host` when auth is off
        /// (a loopback gateway behind a local reverse proxy, say).
        public var allowedHosts: [String] = []
        /// Members of this group may use `stateDir/gateway.sock` too (else only
        /// the gateway's own user and root).
        public var socketGroup: String?
        /// Items one `POST /v1/batch/*` request may carry.
        public var maxBatchItems = 50
        /// On SIGTERM, how long running runs get to finish before the gateway
        /// stops them where they are (they resume at the next start).
        public var drainTimeoutSeconds = 30
        /// Reload when the config file or a workflow file changes on disk.
        public var watchFiles = true
        /// How deep `invoke` steps may nest child runs.
        public var maxInvokeDepth = 8
        /// Gateways sharing a PostgreSQL store: runs holding a worker at once
        /// across all of them (each also keeps its own `maxConcurrentRuns`).
        public var fleetMaxConcurrentRuns: Int?
        public init() {}
    }

    public struct Workflows: Codable, Sendable {
        /// Directories searched (recursively) for `*.workflow.yaml|yml|json`, relative to the config file.
        public var dirs = ["workflows"]
        /// Where `POST /v1/workflows/register` may take a path from, besides the
        /// project root (the config file's directory); relative to the config file.
        public var allowedRegistrationDirs: [String] = []
        /// Caps on a zip of workflows uploaded to `POST /v1/workflows/register`.
        public var upload = Upload()
        public init() {}

        public struct Upload: Codable, Sendable {
            /// The request body (the zip as sent) may be at most this large.
            public var maxZipKB = 1024
            /// What the zip's files may take once extracted, counted as they are written.
            public var maxUncompressedKB = 8192
            /// Files and directories in the zip.
            public var maxEntries = 200
            public init() {}
        }
    }

    public struct Storage: Codable, Sendable {
        public enum Driver: String, Codable, Sendable, CaseIterable {
            /// `<stateDir>/skelm.db`, embedded.
            case sqlite
            /// A PostgreSQL database at `url`.
            case postgres
        }
        /// Where runs, steps, events, approvals, triggers, queues and sessions
        /// live. `runs` is its older name, still read.
        public var driver = Driver.sqlite
        /// `postgres://user@host:5432/database?sslmode=…`, without a password
        /// (the config is shown at `GET /v1/config`): that comes from `passwordEnv`.
        public var url: String?
        /// The environment variable holding the database password.
        public var passwordEnv: String?
        /// Connections to PostgreSQL this gateway holds at most.
        public var poolSize = 8
        /// PostgreSQL: how long one statement may go unanswered before its
        /// connection is taken for lost.
        public var statementTimeoutSeconds = 60
        /// `full`: every commit is flushed to disk before it is reported; `normal`:
        /// SQLite fsyncs at WAL checkpoints only, PostgreSQL commits with `synchronous_commit` off.
        public var durability = RunStore.Durability.full
        /// This gateway's name among the gateways sharing a database: what
        /// `runs.gateway` and the fleet's list show. Default: made once
        /// (`<host>-<random>`) and kept in `<stateDir>/gateway-id`.
        public var gatewayId: String?
        public init() {}

        enum CodingKeys: String, CodingKey {
            case driver, url, passwordEnv, poolSize, statementTimeoutSeconds, durability, gatewayId
            case runs
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(driver, forKey: .driver)
            try c.encodeIfPresent(url, forKey: .url)
            try c.encodeIfPresent(passwordEnv, forKey: .passwordEnv)
            try c.encode(poolSize, forKey: .poolSize)
            try c.encode(statementTimeoutSeconds, forKey: .statementTimeoutSeconds)
            try c.encode(durability, forKey: .durability)
            try c.encodeIfPresent(gatewayId, forKey: .gatewayId)
        }
    }

    public struct Workers: Codable, Sendable {
        public var minSpare = 2
        public var max = 8
        /// Default: derived from the state dir, so two gateways on one host do
        /// not share worker uids (see `derivedUidBase`).
        public var uidBase: UInt32?
        /// Default: `<stateDir>/workspaces`.
        public var workspaceRoot: String?
        /// How new workers start: forked from a warmed-up template, or exec'd fresh.
        public var spawn = SpawnMode.template
        /// Workers one template forks before a freshly exec'd one replaces it.
        public var templateRecycleAfter = 1_000
        public var limits = Limits()
        public init() {}
    }

    public enum SpawnMode: String, Codable, Sendable {
        /// Fork from a worker template (root only; otherwise `exec` is used).
        case template
        /// Exec the skelm binary for every worker.
        case exec
    }

    public struct Limits: Codable, Sendable {
        public var addressSpaceMB: UInt64 = 1024
        /// The worker process itself (its runtime, its threads, what it holds of a job).
        public var workerAddressSpaceMB: UInt64 = 4096
        public var cpuSeconds: UInt64 = 60
        public var processes: UInt64 = 64
        public var openFiles: UInt64 = 256
        public var fileSizeMB: UInt64 = 1024
        /// What one job's workspace and homes may hold in all.
        public var diskMB: UInt64 = 4096
        public var diskFiles: Int = 100_000
        public var outputKB: Int = 1024
        public var timeoutSeconds: Int = 60
        public init() {}
    }

    public struct Sandbox: Codable, Sendable {
        /// Layers every worker must have; a worker without one is refused. Default: all
        /// (`nproc` only when the gateway runs as root, the one case the kernel enforces it).
        public var require: [SandboxLayer]?
        public init() {}
    }

    public init() {}

    public func requiredLayers(runningAsRoot: Bool) -> Set<SandboxLayer> {
        sandbox.require.map(Set.init) ?? WorkerPoolConfiguration.defaultRequirements(runningAsRoot: runningAsRoot)
    }
}

// Synthesized Decodable ignores default values; these keep every key optional.
extension KeyedDecodingContainer {
    func value<T: Decodable>(_ key: Key, or fallback: T) throws -> T {
        try decodeIfPresent(T.self, forKey: key) ?? fallback
    }
}

extension GatewayConfig {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = GatewayConfig()
        server = try c.value(.server, or: d.server)
        stateDir = try c.decodeIfPresent(String.self, forKey: .stateDir)
        workers = try c.value(.workers, or: d.workers)
        sandbox = try c.value(.sandbox, or: d.sandbox)
        workflows = try c.value(.workflows, or: d.workflows)
        storage = try c.value(.storage, or: d.storage)
        audit = try c.value(.audit, or: d.audit)
        defaults = try c.value(.defaults, or: d.defaults)
        permissionProfiles = try c.value(.permissionProfiles, or: d.permissionProfiles)
        secrets = try c.value(.secrets, or: d.secrets)
        egress = try c.value(.egress, or: d.egress)
        providers = try c.value(.providers, or: d.providers)
        agents = try c.value(.agents, or: d.agents)
        mcpServers = try c.value(.mcpServers, or: d.mcpServers)
        skills = try c.value(.skills, or: d.skills)
    }
}

extension GatewayConfig.Secrets {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        env = try c.decodeIfPresent(Env.self, forKey: .env)
        file = try c.decodeIfPresent(File.self, forKey: .file)
    }
}

extension GatewayConfig.Defaults {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        permissions = try c.value(.permissions, or: PermissionConfig())
        unrestrictedGrants = try c.value(.unrestrictedGrants, or: [])
    }
}

extension GatewayConfig {
    /// The resolver for this config; `SKELM_UNRESTRICTED_WORKFLOWS` (comma-separated
    /// workflow ids) adds to `defaults.unrestrictedGrants`.
    /// The agents, MCP servers and skills it registers come with it, resolved.
    public func policyResolver(environment: [String: String], configPath: String?) -> PolicyResolver {
        let fromEnv = (environment["SKELM_UNRESTRICTED_WORKFLOWS"] ?? "").split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return PolicyResolver(defaults: defaults.permissions.set, profiles: permissionProfiles.mapValues(\.set),
                              unrestrictedGrants: defaults.unrestrictedGrants + fromEnv,
                              peers: PeerRegistry(config: self, skillDirs: absolute(skills.dirs, configPath: configPath)))
    }

    /// Granted paths must be absolute and must not expose the state directory.
    func validatePermissions(file: String) throws {
        let all = [("defaults.permissions", defaults.permissions)] + permissionProfiles.map { ("permissionProfiles.\($0.key)", $0.value) }
        for (key, p) in all {
            for (dim, paths) in [("fsRead", p.fsRead ?? []), ("fsWrite", p.fsWrite ?? [])] {
                for path in paths where !path.hasPrefix("/") {
                    throw ConfigError(file: file, line: nil, keyPath: "\(key).\(dim)", message: "'\(path)' must be an absolute path")
                }
            }
        }
    }
}

extension GatewayConfig.Audit {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        checkpointEvery = try c.value(.checkpointEvery, or: Self().checkpointEvery)
        archive = try c.decodeIfPresent(Archive.self, forKey: .archive)
    }

    func validate(file: String) throws {
        func bad(_ key: String, _ message: String) -> ConfigError { ConfigError(file: file, line: nil, keyPath: "audit." + key, message: message) }
        if !(1...1_000_000).contains(checkpointEvery) { throw bad("checkpointEvery", "must be between 1 and 1000000") }
        guard let archive else { return }
        if archive.maxSegmentMB == nil, archive.maxSegmentEntries == nil {
            throw bad("archive", "needs maxSegmentMB or maxSegmentEntries (or both)")
        }
        if let mb = archive.maxSegmentMB, !(1...1_048_576).contains(mb) { throw bad("archive.maxSegmentMB", "must be between 1 and 1048576") }
        if let n = archive.maxSegmentEntries, n < 1 { throw bad("archive.maxSegmentEntries", "must be at least 1") }
    }
}

extension GatewayConfig.Workflows {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = Self()
        dirs = try c.value(.dirs, or: d.dirs)
        allowedRegistrationDirs = try c.value(.allowedRegistrationDirs, or: d.allowedRegistrationDirs)
        upload = try c.value(.upload, or: d.upload)
    }

    func validate(file: String) throws {
        func bad(_ key: String, _ message: String) -> ConfigError { ConfigError(file: file, line: nil, keyPath: "workflows." + key, message: message) }
        if dirs.contains(where: \.isEmpty) { throw bad("dirs", "must not contain an empty path") }
        if allowedRegistrationDirs.contains(where: \.isEmpty) { throw bad("allowedRegistrationDirs", "must not contain an empty path") }
        if !(1...1_048_576).contains(upload.maxZipKB) { throw bad("upload.maxZipKB", "must be between 1 and 1048576") }
        if !(1...4_194_304).contains(upload.maxUncompressedKB) { throw bad("upload.maxUncompressedKB", "must be between 1 and 4194304") }
        if !(1...100_000).contains(upload.maxEntries) { throw bad("upload.maxEntries", "must be between 1 and 100000") }
    }
}

extension GatewayConfig.Workflows.Upload {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = Self()
        maxZipKB = try c.value(.maxZipKB, or: d.maxZipKB)
        maxUncompressedKB = try c.value(.maxUncompressedKB, or: d.maxUncompressedKB)
        maxEntries = try c.value(.maxEntries, or: d.maxEntries)
    }
}

extension GatewayConfig.Storage {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = Self()
        let older: Driver? = try c.decodeIfPresent(Driver.self, forKey: .runs)
        driver = try c.decodeIfPresent(Driver.self, forKey: .driver) ?? older ?? d.driver
        if let older, older != driver {
            throw DecodingError.dataCorruptedError(forKey: .runs, in: c, debugDescription: "storage.runs is the older name of storage.driver, and says otherwise")
        }
        url = try c.decodeIfPresent(String.self, forKey: .url)
        passwordEnv = try c.decodeIfPresent(String.self, forKey: .passwordEnv)
        poolSize = try c.value(.poolSize, or: d.poolSize)
        statementTimeoutSeconds = try c.value(.statementTimeoutSeconds, or: d.statementTimeoutSeconds)
        durability = try c.value(.durability, or: d.durability)
        gatewayId = try c.decodeIfPresent(String.self, forKey: .gatewayId)
    }
}

extension GatewayConfig.Server {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = Self()
        host = try c.value(.host, or: d.host)
        port = try c.value(.port, or: d.port)
        maxConcurrentRuns = try c.value(.maxConcurrentRuns, or: d.maxConcurrentRuns)
        maxBodyKB = try c.value(.maxBodyKB, or: d.maxBodyKB)
        runTimeoutSeconds = try c.value(.runTimeoutSeconds, or: d.runTimeoutSeconds)
        sseHeartbeatSeconds = try c.value(.sseHeartbeatSeconds, or: d.sseHeartbeatSeconds)
        idleTimeoutSeconds = try c.value(.idleTimeoutSeconds, or: d.idleTimeoutSeconds)
        maxConnections = try c.value(.maxConnections, or: d.maxConnections)
        maxRunStorageMB = try c.value(.maxRunStorageMB, or: d.maxRunStorageMB)
        auth = try c.value(.auth, or: d.auth)
        allowedHosts = try c.value(.allowedHosts, or: d.allowedHosts)
        socketGroup = try c.decodeIfPresent(String.self, forKey: .socketGroup)
        maxBatchItems = try c.value(.maxBatchItems, or: d.maxBatchItems)
        drainTimeoutSeconds = try c.value(.drainTimeoutSeconds, or: d.drainTimeoutSeconds)
        watchFiles = try c.value(.watchFiles, or: d.watchFiles)
        maxInvokeDepth = try c.value(.maxInvokeDepth, or: d.maxInvokeDepth)
        fleetMaxConcurrentRuns = try c.decodeIfPresent(Int.self, forKey: .fleetMaxConcurrentRuns)
    }
}

extension GatewayConfig.Workers {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = Self()
        minSpare = try c.value(.minSpare, or: d.minSpare)
        max = try c.value(.max, or: d.max)
        uidBase = try c.decodeIfPresent(UInt32.self, forKey: .uidBase)
        workspaceRoot = try c.decodeIfPresent(String.self, forKey: .workspaceRoot)
        spawn = try c.value(.spawn, or: d.spawn)
        templateRecycleAfter = try c.value(.templateRecycleAfter, or: d.templateRecycleAfter)
        limits = try c.value(.limits, or: d.limits)
    }
}

extension GatewayConfig.Limits {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = Self()
        addressSpaceMB = try c.value(.addressSpaceMB, or: d.addressSpaceMB)
        workerAddressSpaceMB = try c.value(.workerAddressSpaceMB, or: d.workerAddressSpaceMB)
        cpuSeconds = try c.value(.cpuSeconds, or: d.cpuSeconds)
        processes = try c.value(.processes, or: d.processes)
        openFiles = try c.value(.openFiles, or: d.openFiles)
        fileSizeMB = try c.value(.fileSizeMB, or: d.fileSizeMB)
        diskMB = try c.value(.diskMB, or: d.diskMB)
        diskFiles = try c.value(.diskFiles, or: d.diskFiles)
        outputKB = try c.value(.outputKB, or: d.outputKB)
        timeoutSeconds = try c.value(.timeoutSeconds, or: d.timeoutSeconds)
    }
}

extension GatewayConfig.Sandbox {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        require = try c.decodeIfPresent([SandboxLayer].self, forKey: .require)
    }
}
