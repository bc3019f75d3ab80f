import Foundation
import Logging
import Workflow

extension Gateway {
    /// The config in effect now: the file as last applied, plus `PATCH /v1/config`.
    public var running: GatewayConfig { effective.withLock { $0 } }

    /// SIGHUP, `POST /gateway/reload`, an edited config or workflow file: reads
    /// the config file again and applies what may change live; reads the
    /// workflows again. An invalid file changes nothing (`config.reload_failed`).
    public func reload(actor: String, trigger: ReloadReport.Trigger) async -> ReloadReport {
        await reloads.run {
            var report = ReloadReport(outcome: .unchanged, trigger: trigger)
            if let configPath {
                let hash = Self.hash(of: configPath)
                if hash != configHash.withLock({ $0 }) {
                    do {
                        let candidate = try ConfigLoader.load(path: configPath).config
                        report = await self.apply(candidate, actor: actor, trigger: trigger, action: "config.reloaded",
                                                  extra: ["configSha256": hash])
                        // A candidate that failed to apply (a secret it names is missing) is
                        // not taken as read: the next reload tries it again.
                        if report.outcome != .rejected { configHash.withLock { $0 = hash } }
                    } catch {
                        report.outcome = .rejected
                        report.error = "\(error)"
                        await self.auditReloadFailure(actor: actor, trigger: trigger, error: "\(error)")
                    }
                }
            }
            let (valid, invalid) = await registry.reload()
            report.workflows = .init(valid: valid, invalid: invalid)
            logger.log(level: report.outcome == .rejected ? .error : .info, "reload: \(report.summary)", metadata: ["trigger": "\(trigger.rawValue)"])
            return report
        }
    }

    /// `PATCH /v1/config`: the hot keys of `patch` (key path → JSON value) on
    /// top of the running config, validated and applied as one change.
    public func patch(_ changes: [(key: String, value: JSONValue)], actor: String) async throws(ConfigPatch.Refusal) -> ReloadReport {
        let changes = changes.map { ConfigPatch.Item(key: $0.key, value: $0.value) }
        return try await reloads.run { () -> Result<ReloadReport, ConfigPatch.Refusal> in
            let candidate: GatewayConfig
            do { candidate = try ConfigPatch.apply(changes.map { ($0.key, $0.value) }, to: running, file: configPath ?? "config") }
            catch let refusal as ConfigPatch.Refusal { return .failure(refusal) }
            catch { return .failure(.invalid("\(error)")) }
            let report = await apply(candidate, actor: actor, trigger: .patch, action: "config.patched", extra: [:])
            if report.outcome == .rejected { return .failure(.invalid(report.error ?? "rejected")) }
            return .success(report)
        }.get()
    }

    /// Applies the live part of `candidate` all at once, after everything that
    /// can fail (secrets, tokens) has been built; the rest waits for a restart.
    func apply(_ candidate: GatewayConfig, actor: String, trigger: ReloadReport.Trigger, action: String,
               extra: [String: String]) async -> ReloadReport {
        let old = running
        let effectiveNew = Self.liveSubset(of: candidate, running: old, ceilingUnchanged:
            candidate.policyResolver(environment: [:], configPath: configPath).ceilingPaths == old.policyResolver(environment: [:], configPath: configPath).ceilingPaths)
        var report = ReloadReport(outcome: .applied, trigger: trigger)
        report.applied = ConfigDiff.changes(from: old, to: effectiveNew)
        report.restartRequired = ConfigDiff.changes(from: effectiveNew, to: candidate)
        if report.applied.isEmpty, report.restartRequired.isEmpty {
            report.outcome = .unchanged
            return report
        }
        let file = configPath ?? "config"
        let environment = ProcessInfo.processInfo.environment
        do {
            // What the running gateway keeps (listeners, auth mode) with what the
            // file changes must still make a valid config, or nothing applies.
            try effectiveNew.validate(file: file)
            // Checked on the file as a whole: a grant that only takes effect at the
            // next start must not be accepted now and refuse that start later.
            try ControlFiles.check(ConfigLoader.Loaded(config: candidate, path: configPath, stateDir: stateDir),
                                   workspaceRoot: pool.configuration.workspaceRoot)
            let secrets = try SecretStore(envPrefix: effectiveNew.secrets.env?.prefix, filePath: effectiveNew.secrets.file?.path,
                                          environment: environment)
            try authenticator.replaceTokens(effectiveNew.server.auth.tokens, file: file) { token in
                if let name = token.env { return environment[name] }
                return try secrets.value(of: token.secret ?? "")
            }
            let resolver = effectiveNew.policyResolver(environment: environment, configPath: configPath)
            await runs.apply(effectiveNew.runSettings(policies: resolver, secrets: secrets))
            await startResidents(resolver)
            await pool.retune(PoolTunables(effectiveNew.poolConfiguration(stateDir: stateDir, runningAsRoot: geteuid() == 0)))
        } catch {
            report = ReloadReport(outcome: .rejected, trigger: trigger)
            report.error = "\(error)"
            await auditReloadFailure(actor: actor, trigger: trigger, error: "\(error)")
            return report
        }
        effective.withLock { $0 = effectiveNew }
        // New secrets may arm a webhook that waited for its signing secret.
        scheduler.requestSync()
        let loaded = ConfigLoader.Loaded(config: effectiveNew, path: configPath, stateDir: stateDir)
        // The registration rules first: the dirs' reload below reads registrations again under them.
        await registry.setRegistration(RegistrationSettings(loaded: loaded))
        if effectiveNew.workflows.dirs != old.workflows.dirs {
            _ = await registry.setDirs(loaded.workflowDirs)
        }
        var details = extra
        details["trigger"] = trigger.rawValue
        details["applied"] = report.applied.map(\.key).joined(separator: ",")
        details["restartRequired"] = report.restartRequired.map(\.key).joined(separator: ",")
        details["changes"] = Self.describe(report.applied)
        do { try await audit.append(actor: actor, action: action, details: details) } catch {
            logger.error("audit append failed", metadata: ["error": "\(error)"])
        }
        return report
    }

    /// `candidate` with every key that cannot change in a running gateway put
    /// back to its running value. Listeners, the state dir, the store, the
    /// sandbox, the worker pool's identity and the audit chain are fixed at
    /// start; so are the permission ceilings' paths when they change, since
    /// live workers' Landlock base layers and noexec mounts were built from them.
    static func liveSubset(of candidate: GatewayConfig, running old: GatewayConfig, ceilingUnchanged: Bool) -> GatewayConfig {
        var new = candidate
        new.stateDir = old.stateDir
        new.storage = old.storage
        new.sandbox = old.sandbox
        new.audit = old.audit
        new.server.host = old.server.host
        new.server.port = old.server.port
        new.server.maxBodyKB = old.server.maxBodyKB
        new.server.sseHeartbeatSeconds = old.server.sseHeartbeatSeconds
        new.server.idleTimeoutSeconds = old.server.idleTimeoutSeconds
        new.server.maxConnections = old.server.maxConnections
        new.server.allowedHosts = old.server.allowedHosts
        new.server.socketGroup = old.server.socketGroup
        new.server.auth.mode = old.server.auth.mode
        new.server.watchFiles = old.server.watchFiles
        // The control plane's TLS client is built with its CA file at start.
        new.egress.caFile = old.egress.caFile
        // The pool's identity and what each worker's sandbox is built with stay;
        // its sizes and the limits a job gets do not.
        new.workers = old.workers
        new.workers.minSpare = candidate.workers.minSpare
        new.workers.max = candidate.workers.max
        for key: WritableKeyPath<GatewayConfig.Limits, UInt64> in [\.addressSpaceMB, \.cpuSeconds, \.diskMB] {
            new.workers.limits[keyPath: key] = candidate.workers.limits[keyPath: key]
        }
        new.workers.limits.diskFiles = candidate.workers.limits.diskFiles
        new.workers.limits.outputKB = candidate.workers.limits.outputKB
        new.workers.limits.timeoutSeconds = candidate.workers.limits.timeoutSeconds
        if new.workers.limits.addressSpaceMB > new.workers.limits.workerAddressSpaceMB {
            // A step may not get more than the worker it runs in, which is fixed.
            new.workers.limits.addressSpaceMB = old.workers.limits.addressSpaceMB
        }
        if !ceilingUnchanged {
            // Registered peers' programs and installations are part of the base layer too.
            new.defaults = old.defaults
            new.permissionProfiles = old.permissionProfiles
            new.agents = old.agents
            new.mcpServers = old.mcpServers
        }
        return new
    }

    static func describe(_ changes: [ConfigDiff.Change]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(changes)).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
    }

    func auditReloadFailure(actor: String, trigger: ReloadReport.Trigger, error: String) async {
        logger.error("config reload failed; keeping the running config", metadata: ["error": "\(error)"])
        _ = try? await audit.append(actor: actor, action: "config.reload_failed", details: [
            "config": configPath ?? "(defaults)", "trigger": trigger.rawValue, "error": error,
        ])
    }
}

extension Gateway {
    /// Reloads when the config file or a workflow file changes on disk (when
    /// `server.watchFiles`), a quarter second after the last change of a burst:
    /// an editor's save or a `git checkout` is one reload, not twenty.
    public func watchFiles() async {
        guard running.server.watchFiles else { return }
        let dirs = ConfigLoader.Loaded(config: running, path: configPath, stateDir: stateDir).workflowDirs
        guard let watcher = FileWatcher(configPath: configPath, workflowDirs: dirs) else {
            logger.warning("cannot watch files for changes (inotify); reload with SIGHUP or skelm gateway reload")
            return
        }
        defer { watcher.stop() }
        await withTaskCancellationHandler {
            for await _ in watcher.changes {
                try? await Task.sleep(for: .milliseconds(250))
                _ = await reload(actor: "gateway", trigger: .fileChange)
            }
        } onCancel: {
            watcher.stop()
        }
    }
}
