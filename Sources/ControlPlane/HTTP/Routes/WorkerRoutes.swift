import Foundation
import Hummingbird
import Sandbox

extension API {
    func addWorkerRoutes(_ router: Router<GatewayContext>) {
        router.get("/v1/workers") { request, _ -> Response in
            struct Pool: Encodable {
                let workers: [WorkerInfo]
                let live: Int
                let idle: Int
                let busy: Int
                let peakBusy: Int
                let minSpare: Int
                let max: Int
                /// Spawn to handshake (sandbox included) of every worker so far, in ms.
                let spawnMs: [String: Double]
                /// Job sent to the worker's first event (a warm worker's dispatch), in ms.
                let dispatchMs: [String: Double]
                /// How workers start: forked from the worker template, or exec'd.
                let spawn: WorkerSpawner.SpawnInfo
            }
            let c = await pool.counts
            // ?spawnsFrom=N: spawn statistics over the spawns after the first N only.
            let from = try request.intQuery("spawnsFrom", default: 0, range: 0...Int.max)
            let spawn = pool.spawnLatencies.summary(skipping: from)
            let dispatch = pool.dispatchLatencies.summary()
            return JSONResponse.make(Pool(workers: await pool.snapshot(), live: c.live, idle: c.idle, busy: c.busy,
                                          peakBusy: await pool.peakBusy, minSpare: pool.tunables.minSpare,
                                          max: pool.tunables.max,
                                          spawnMs: ["count": Double(spawn.count), "total": Double(spawn.total),
                                                    "p50": spawn.p50, "p99": spawn.p99],
                                          dispatchMs: ["count": Double(dispatch.count), "p50": dispatch.p50, "p99": dispatch.p99],
                                          spawn: pool.spawnInfo))
        }

        router.get("/v1/workers/:id") { _, context -> Response in
            let pid = try Self.workerPid(context)
            guard let info = await pool.info(pid: pid) else { throw APIError.notFound("no live worker with pid \(pid)") }
            return JSONResponse.make(info)
        }

        router.post("/v1/workers/:id/drain") { _, context -> Response in
            let pid = try Self.workerPid(context)
            guard let info = await pool.drain(pid: pid) else { throw APIError.notFound("no live worker with pid \(pid)") }
            var details = ["pid": "\(pid)", "state": info.state]
            if let job = info.jobId { details["job"] = job }
            try await audit.append(actor: context.caller.name, action: "worker.drained", details: details)
            return JSONResponse.make(info)
        }
    }

    /// A worker is named by its pid, as `GET /v1/workers` lists it.
    private static func workerPid(_ context: GatewayContext) throws -> Int32 {
        let id = try context.parameters.require("id")
        guard let pid = Int32(id), pid > 0 else { throw APIError.notFound("no live worker with pid \(id)") }
        return pid
    }
}
