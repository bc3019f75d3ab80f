import Foundation
import Hummingbird

extension API {
    func addHealthRoutes(_ router: Router<GatewayContext>) {
        router.get("/health") { _, _ -> Response in
            struct Health: Encodable {
                let status: String
                let version: String
                let uptimeSeconds: Double
                let workers: [String: Int]
                let runs: [String: Int]
            }
            let w = await pool.counts
            let r = await runs.counts
            return JSONResponse.make(Health(status: "ok", version: SkelmVersion.string,
                                            uptimeSeconds: Date().timeIntervalSince(startedAt).rounded(),
                                            workers: ["live": w.live, "idle": w.idle, "busy": w.busy],
                                            runs: ["queued": r.queued, "running": r.running]))
        }
    }
}
