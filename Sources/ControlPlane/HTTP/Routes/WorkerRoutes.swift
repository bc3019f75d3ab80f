import Foundation
import Hummingbird

extension API {
    func addWorkerRoutes(_ router: Router<BasicRequestContext>) {
        router.get("/v1/workers") { _, _ -> Response in
            struct Pool: Encodable {
                let workers: [WorkerInfo]
                let live: Int
                let idle: Int
                let busy: Int
                let peakBusy: Int
                let minSpare: Int
                let max: Int
            }
            let c = await pool.counts
            return JSONResponse.make(Pool(workers: await pool.snapshot(), live: c.live, idle: c.idle, busy: c.busy,
                                          peakBusy: await pool.peakBusy, minSpare: pool.configuration.minSpare,
                                          max: pool.configuration.max))
        }
    }
}
