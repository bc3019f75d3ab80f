import Foundation

/// What operators see of the pool, and what they may do to one worker.
extension WorkerPool {
    public func snapshot() -> [WorkerInfo] {
        live.values.sorted { $0.pid < $1.pid }.map(Self.info)
    }

    public func info(pid: Int32) -> WorkerInfo? {
        live[pid].map(Self.info)
    }

    public var counts: (live: Int, idle: Int, busy: Int) {
        (live.count, idle.count, live.values.filter { $0.phase == .busy }.count)
    }

    /// Retires one worker: an idle one now (a replacement keeps `minSpare`), a
    /// handshaking one as soon as it is ready, a busy one after its job (a
    /// worker runs one job anyway; drained, it shows as `draining` until it
    /// exits). nil: no live worker has this pid.
    public func drain(pid: Int32) -> WorkerInfo? {
        guard let worker = live[pid] else { return nil }
        if !worker.draining {
            worker.markDraining()
            GatewayMetrics.workerDrained()
        }
        // A worker already handed to a waiting job is past `idle`, whatever its phase says.
        if let i = idle.firstIndex(where: { $0 === worker }) {
            idle.remove(at: i)
            worker.kill(reason: "drained by an operator", exit: .drained)
            replenish()
        }
        return Self.info(worker)
    }

    static func info(_ w: ManagedWorker) -> WorkerInfo {
        WorkerInfo(pid: w.pid, uid: w.uid, state: w.draining && !w.hasExited ? "draining" : w.phase.rawValue, jobId: w.jobId,
                   ageSeconds: Date().timeIntervalSince(w.spawnedAt),
                   layers: w.report?.active.map(\.rawValue) ?? [])
    }
}
