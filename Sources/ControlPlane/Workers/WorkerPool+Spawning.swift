import Foundation
import Sandbox
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// Starting workers, and seeing them end: the spawn and its handshake, and
/// the reaping of each one's process, whoever ended it.
extension WorkerPool {

    func workerSpecJSON() throws -> String {
        if let sandboxSpecJSON { return sandboxSpecJSON }
        var spec = WorkerSandboxSpec(
            namespaces: spawner.namespaces.map(\.rawValue), workspaceRoot: configuration.workspaceRoot,
            extraReadPaths: Self.runtimeLibraryDirectories + configuration.ceilingRead,
            extraWritePaths: configuration.ceilingWrite, maxOpenFiles: configuration.maxOpenFiles,
            maxFileSizeBytes: configuration.maxFileSizeBytes,
            maxProcesses: spawner.runningAsRoot ? configuration.maxProcesses : 0)
        spec.egressSocket = configuration.egressSocket
        spec.maxAddressSpaceBytes = configuration.maxAddressSpaceBytes
        let json = String(decoding: try JSONEncoder().encode(spec), as: UTF8.self)
        sandboxSpecJSON = json
        return json
    }

    func spawnWorker() async throws -> ManagedWorker {
        let started = ContinuousClock.now
        let specJSON = try workerSpecJSON()
        let spawner = self.spawner
        let logFD = configuration.logFD
        // The hostile-worker tests put a script in the worker's place: that needs an exec.
        let fromTemplate = spawner.usesTemplate && configuration.workerArgumentsPrefix.isEmpty
        let arguments = configuration.workerArgumentsPrefix + ["worker", "--fd", "3", "--sandbox", specJSON]
        let spawned = try await spawnThread.runIfActive {
            fromTemplate ? try spawner.spawnFromTemplate(specJSON: specJSON, logFD: logFD)
                         : try spawner.spawn(arguments: arguments, logFD: logFD)
        }
        let worker = ManagedWorker(pid: spawned.pid, uid: spawned.uid, pidfd: spawned.pidfd,
                                   templateGeneration: spawned.templateGeneration)
        live[spawned.pid] = worker
        if let status = earlyExits.removeValue(forKey: spawned.pid) {
            // It died before we registered it; the handshake wait below fails at once.
            workerExited(worker, ExitStatus(waitStatus: status))
        }
        let handler = WorkerConnection(worker: worker, required: configuration.require, onEvent: onEvent, logger: logger)
        let peer: RPCPeer
        do {
            peer = try await RPCPeer.connect(fd: spawned.channelFD, group: group, handler: handler)
        } catch {
            close(spawned.channelFD)
            worker.kill(reason: "channel setup failed: \(error)", exit: .handshakeFailed)
            reap(worker)
            throw WorkerFailure.spawnFailed("channel setup failed: \(error)")
        }
        worker.attach(peer)
        peer.closeFuture.whenComplete { _ in Task { await self.reap(worker) } }
        watch.expectHello(worker, within: configuration.handshakeTimeout)
        defer { watch.helloSettled(worker) }
        _ = try await worker.waitForHello()
        let ms = (ContinuousClock.now - started).inMilliseconds
        spawnLatencies.append(ms)
        GatewayMetrics.workerSpawned(ms: ms)
        onLifecycle("worker.spawned", ["pid": "\(worker.pid)", "uid": "\(worker.uid)",
                                       "layers": (worker.report?.active.map(\.rawValue).sorted() ?? []).joined(separator: ",")])
        return worker
    }

    func templateWorkerExited(pid: Int32, status: Int32) {
        guard let worker = live[pid], worker.templateGeneration != nil else {
            earlyExits[pid] = status
            return
        }
        reaping.remove(pid)
        workerExited(worker, ExitStatus(waitStatus: status))
    }

    /// A template ended: its remaining workers died with it (their death signal).
    func templateGone(_ generation: Int) {
        for worker in live.values where worker.templateGeneration == generation && !worker.hasExited {
            reaping.remove(worker.pid)
            workerExited(worker, ExitStatus(waitStatus: SIGKILL))
        }
        earlyExits.removeAll()
    }

    /// Waits for the worker's process (killing it if it lingers without its channel)
    /// and forgets it. Only this pid is waited for: other children are not ours.
    func reap(_ worker: ManagedWorker) {
        guard reaping.insert(worker.pid).inserted else { return }
        if worker.templateGeneration != nil {
            // The template reaps it and reports the status (templateWorkerExited).
            watch.expectExit(worker, within: .milliseconds(100))
            return
        }
        let pid = worker.pid
        let future = reaperThreads.runIfActive(eventLoop: group.next()) { () -> Int32 in
            for _ in 0..<50 {
                if let status = WorkerSpawner.poll(pid: pid) { return status }
                usleep(2_000)
            }
            // Through the worker's record, so its exit is counted as lingering, not as a crash.
            worker.kill(reason: "channel closed but process did not exit", exit: .lingered)
            return WorkerSpawner.wait(pid: pid)
        }
        future.whenComplete { result in
            let status = ExitStatus(waitStatus: (try? result.get()) ?? 0x9)
            Task { await self.workerExited(worker, status) }
        }
    }

    func workerExited(_ worker: ManagedWorker, _ status: ExitStatus) {
        reaping.remove(worker.pid)
        live[worker.pid] = nil
        // Its processes are gone with its pid namespace: the uid is free again
        // (once: a second report of the same exit must not free a uid reused since).
        if !worker.hasExited {
            tenancy.ended(uid: worker.uid)
            spawner.release(uid: worker.uid)
        }
        idle.removeAll { $0 === worker }
        worker.markExited(status)
        GatewayMetrics.workerExited(WorkerExitCause.of(status, killedFor: worker.exitCause))
        var details = ["pid": "\(worker.pid)", "status": "\(status)"]
        if let job = worker.jobId { details["job"] = job }
        if let reason = worker.killReason { details["reason"] = reason }
        onLifecycle("worker.exited", details)
        if status.isSeccompViolation, worker.phase != .busy {
            onViolation(worker.pid, "worker \(status)")
        }
        if worker.phase == .idle || worker.phase == .handshaking, worker.killReason == nil, !stopping {
            logger.warning("worker exited unexpectedly", metadata: ["pid": "\(worker.pid)", "status": "\(status)"])
        }
        replenish()
    }

    func exitStatus(of worker: ManagedWorker, grace: Duration) async -> ExitStatus {
        let killer = Task {
            try await Task.sleep(for: grace)
            worker.kill(reason: "channel closed but process did not exit", exit: .lingered)
        }
        defer { killer.cancel() }
        return await worker.waitForExit()
    }

    /// A dynamically linked skelm needs its Swift runtime readable after Landlock.
    static let runtimeLibraryDirectories: [String] = {
        guard let maps = try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8) else { return [] }
        var dirs = Set<String>()
        for line in maps.split(separator: "\n") {
            guard let path = line.split(separator: " ", omittingEmptySubsequences: true).last, path.hasPrefix("/"),
                  path.contains("libswift") || path.contains("libFoundation") || path.contains("lib_Foundation") || path.contains("libdispatch") else { continue }
            dirs.insert(String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)]))
        }
        return dirs.sorted()
    }()
}
