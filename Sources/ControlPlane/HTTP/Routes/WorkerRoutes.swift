import Foundation
import Hummingbird
import Sandbox

extension API {
    static func percentiles(_ samples: [Double]) -> [String: Double] {
        let s = samples.sorted()
        func pct(_ p: Double) -> Double { s.isEmpty ? 0 : s[min(s.count - 1, Int(Double(s.count) * p))] }
        return ["count": Double(s.count), "p50": pct(0.5), "p99": pct(0.99)]
    }

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
            let all = await pool.spawnLatenciesMs
            var spawnMs = Self.percentiles(Array(all.dropFirst(min(from, all.count))))
            spawnMs["total"] = Double(all.count)
            return JSONResponse.make(Pool(workers: await pool.snapshot(), live: c.live, idle: c.idle, busy: c.busy,
                                          peakBusy: await pool.peakBusy, minSpare: pool.configuration.minSpare,
                                          max: pool.configuration.max,
                                          spawnMs: spawnMs,
                                          dispatchMs: Self.percentiles(pool.dispatchLatencies.all),
                                          spawn: pool.spawnInfo))
        }
    }
}
