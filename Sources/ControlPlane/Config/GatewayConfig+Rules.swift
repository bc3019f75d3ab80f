import Foundation
import Wire
import Workflow

extension GatewayConfig {
    /// Checks values that decode but make no sense, naming the key.
    public func validate(file: String) throws {
        func bad(_ key: String, _ message: String) -> ConfigError { ConfigError(file: file, line: nil, keyPath: key, message: message) }
        if !(0...65535).contains(server.port) { throw bad("server.port", "must be between 1 and 65535 (0: any free port)") }
        if !(1...1024).contains(server.maxConcurrentRuns) { throw bad("server.maxConcurrentRuns", "must be between 1 and 1024") }
        if !(1...1_048_576).contains(server.maxBodyKB) { throw bad("server.maxBodyKB", "must be between 1 and 1048576") }
        if !(1...3600).contains(server.sseHeartbeatSeconds) { throw bad("server.sseHeartbeatSeconds", "must be between 1 and 3600") }
        if !(1...86_400).contains(server.idleTimeoutSeconds) { throw bad("server.idleTimeoutSeconds", "must be between 1 and 86400") }
        if !(1...1_000_000).contains(server.maxConnections) { throw bad("server.maxConnections", "must be between 1 and 1000000") }
        if server.runTimeoutSeconds < 1 { throw bad("server.runTimeoutSeconds", "must be at least 1") }
        if !(1...1_048_576).contains(server.maxRunStorageMB) { throw bad("server.maxRunStorageMB", "must be between 1 and 1048576") }
        if !(1...1000).contains(server.maxBatchItems) { throw bad("server.maxBatchItems", "must be between 1 and 1000") }
        if !(0...86_400).contains(server.drainTimeoutSeconds) { throw bad("server.drainTimeoutSeconds", "must be between 0 and 86400") }
        if !(1...64).contains(server.maxInvokeDepth) { throw bad("server.maxInvokeDepth", "must be between 1 and 64") }
        if let cap = server.fleetMaxConcurrentRuns {
            if !(1...1_000_000).contains(cap) { throw bad("server.fleetMaxConcurrentRuns", "must be between 1 and 1000000") }
            if storage.driver != .postgres {
                throw bad("server.fleetMaxConcurrentRuns", "is for gateways sharing a PostgreSQL store (storage.driver: postgres); use server.maxConcurrentRuns")
            }
        }
        try server.auth.validate(host: server.host, file: file)
        if let group = server.socketGroup, getgrnam(group) == nil {
            throw bad("server.socketGroup", "no group named '\(group)' on this host")
        }
        try storage.validate(file: file)
        try validatePermissions(file: file)
        try audit.validate(file: file)
        try workflows.validate(file: file)
        try validateEgress(file: file)
        try validatePeers(file: file)
        if workers.max < 1 { throw bad("workers.max", "must be at least 1") }
        if workers.minSpare < 0 || workers.minSpare > workers.max { throw bad("workers.minSpare", "must be between 0 and workers.max (\(workers.max))") }
        if let base = workers.uidBase, base < 1000 || UInt64(base) + 50_000 > UInt64(UInt32.max - 1) {
            throw bad("workers.uidBase", "must leave room for 50000 uids above 1000 and below 4294967294")
        }
        if workers.templateRecycleAfter < 1 { throw bad("workers.templateRecycleAfter", "must be at least 1") }
        if !(1...86_400).contains(workers.limits.timeoutSeconds) { throw bad("workers.limits.timeoutSeconds", "must be between 1 and 86400") }
        if !(1...86_400).contains(workers.limits.cpuSeconds) { throw bad("workers.limits.cpuSeconds", "must be between 1 and 86400") }
        if !(1...1_048_576).contains(workers.limits.outputKB) { throw bad("workers.limits.outputKB", "must be between 1 and 1048576") }
        if !(1...1_048_576).contains(workers.limits.fileSizeMB) { throw bad("workers.limits.fileSizeMB", "must be between 1 and 1048576") }
        if !(1...1_048_576).contains(workers.limits.openFiles) { throw bad("workers.limits.openFiles", "must be between 1 and 1048576") }
        if workers.limits.processes < 8 { throw bad("workers.limits.processes", "must be at least 8") }
        if workers.limits.addressSpaceMB < 64 { throw bad("workers.limits.addressSpaceMB", "must be at least 64") }
        if workers.limits.diskMB < 1 { throw bad("workers.limits.diskMB", "must be at least 1") }
        if workers.limits.diskFiles < 10 { throw bad("workers.limits.diskFiles", "must be at least 10") }
        if workers.limits.workerAddressSpaceMB < max(1024, workers.limits.addressSpaceMB) {
            throw bad("workers.limits.workerAddressSpaceMB", "must be at least 1024 and at least workers.limits.addressSpaceMB (\(workers.limits.addressSpaceMB)): a step cannot get more than its worker has")
        }
    }

    func validateEgress(file: String) throws {
        func bad(_ key: String, _ message: String) -> ConfigError { ConfigError(file: file, line: nil, keyPath: key, message: message) }
        if !(1...1_048_576).contains(egress.maxResponseKB) { throw bad("egress.maxResponseKB", "must be between 1 and 1048576") }
        if !(0...20).contains(egress.maxRedirects) { throw bad("egress.maxRedirects", "must be between 0 and 20") }
        if let ca = egress.caFile, !FileManager.default.isReadableFile(atPath: ca) { throw bad("egress.caFile", "\(ca) cannot be read") }
        for (i, c) in egress.inject.enumerated() {
            if let problem = CredentialRules.problems(c).first { throw bad("egress.inject[\(i)]", problem) }
        }
        for (name, p) in providers.sorted(by: { $0.key < $1.key }) {
            if let problem = HTTPURLRule.problem(p.baseURL) { throw bad("providers.\(name).baseURL", problem) }
            if p.model.isEmpty { throw bad("providers.\(name).model", "must name a model") }
        }
    }

    /// The pool configuration this config describes.
    /// One of 20,000 disjoint ranges of 50,000 uids from 1,000,000,000, picked
    /// by a hash of the state dir's path: two gateways of one host get ranges of
    /// their own unless they share a state dir (which they cannot) or collide
    /// (which the gateway detects at start: see `Gateway.checkUidRange`).
    public static func derivedUidBase(stateDir: String) -> UInt32 {
        1_000_000_000 + UInt32(stateDirHash(stateDir) % 20_000) * 50_000
    }

    /// FNV-1a of the state dir's path: stable across runs and builds, unlike
    /// Hasher, so what is derived from it (a uid range, a directory name) is too.
    static func stateDirHash(_ stateDir: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in stateDir.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    /// The run service's share of this config (what a reload may change live).
    public func runSettings(policies: PolicyResolver, secrets: SecretStore) -> RunSettings {
        var settings = RunSettings(policies: policies, secrets: secrets, maxConcurrent: server.maxConcurrentRuns,
                                   maxRunStorageBytes: server.maxRunStorageMB << 20, runTimeout: .seconds(server.runTimeoutSeconds),
                                   stepTimeoutMs: workers.limits.timeoutSeconds * 1000)
        settings.maxInvokeDepth = server.maxInvokeDepth
        settings.fleetMaxConcurrent = server.fleetMaxConcurrentRuns
        settings.requests = RequestSettings(inject: egress.inject, providers: providers, maxResponseBytes: egress.maxResponseKB << 10,
                                            maxRedirects: egress.maxRedirects)
        return settings
    }

    public func poolConfiguration(stateDir: String, runningAsRoot: Bool) -> WorkerPoolConfiguration {
        var pool = WorkerPoolConfiguration(workspaceRoot: workers.workspaceRoot ?? stateDir + "/workspaces")
        pool.minSpare = workers.minSpare
        pool.max = workers.max
        pool.uidBase = workers.uidBase ?? Self.derivedUidBase(stateDir: stateDir)
        pool.require = requiredLayers(runningAsRoot: runningAsRoot)
        pool.maxProcesses = workers.limits.processes
        pool.maxOpenFiles = workers.limits.openFiles
        pool.maxFileSizeBytes = workers.limits.fileSizeMB << 20
        pool.maxAddressSpaceBytes = workers.limits.workerAddressSpaceMB << 20
        pool.diskLimitBytes = workers.limits.diskMB << 20
        pool.diskLimitEntries = workers.limits.diskFiles
        pool.stepLimits = StepLimits(addressSpaceBytes: workers.limits.addressSpaceMB << 20,
                                     cpuSeconds: workers.limits.cpuSeconds,
                                     maxOutputBytes: workers.limits.outputKB << 10)
        return pool
    }
}

extension GatewayConfig.Storage {
    func validate(file: String) throws {
        func bad(_ key: String, _ message: String) -> ConfigError { ConfigError(file: file, line: nil, keyPath: key, message: message) }
        if !(1...256).contains(poolSize) { throw bad("storage.poolSize", "must be between 1 and 256") }
        if !(1...3600).contains(statementTimeoutSeconds) { throw bad("storage.statementTimeoutSeconds", "must be between 1 and 3600") }
        if let gatewayId, !GatewayIdentity.valid(gatewayId) {
            throw bad("storage.gatewayId", "must be 1 to 64 letters, digits, '.', '_' or '-'")
        }
        switch driver {
        case .sqlite:
            if url != nil { throw bad("storage.url", "is for driver postgres; sqlite keeps its file in the state dir") }
            if passwordEnv != nil { throw bad("storage.passwordEnv", "is for driver postgres") }
        case .postgres:
            guard let url else { throw bad("storage.url", "driver postgres needs a url: postgres://user@host:5432/database") }
            let parsed: PostgresURL
            do { parsed = try PostgresURL(url) } catch { throw bad("storage.url", "\(error)") }
            if parsed.password != nil {
                throw bad("storage.url", "must not hold a password (the config is shown at GET /v1/config and in the audit log); name an environment variable in storage.passwordEnv")
            }
        }
    }

    /// The PostgreSQL address with its password from the environment.
    public func postgresURL(environment: [String: String]) throws -> PostgresURL {
        try PostgresURL(url ?? "", password: passwordEnv.flatMap { environment[$0] })
    }
}
