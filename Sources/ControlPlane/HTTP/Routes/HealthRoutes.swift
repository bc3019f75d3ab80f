import Foundation
import Hummingbird

extension API {
    func addHealthRoutes(_ router: Router<GatewayContext>) {
        // Liveness: the process answers. Nothing it depends on is consulted, so
        // a busy gateway is not restarted for being busy.
        router.get("/healthz") { _, _ -> Response in
            JSONResponse.make(["status": "ok"])
        }
        // Readiness: 503 while it resumes the last gateway's runs or drains.
        router.get("/readyz") { _, _ -> Response in
            struct Ready: Encodable {
                let ready: Bool
                let reason: String?
            }
            switch readiness.current {
            case .ready:
                // The reason stays with GET /gateway/status: this route needs no credentials.
                if gateway.admission.paused != nil {
                    return JSONResponse.make(Ready(ready: false, reason: "paused"), status: .serviceUnavailable)
                }
                return JSONResponse.make(Ready(ready: true, reason: nil))
            case .starting: return JSONResponse.make(Ready(ready: false, reason: "starting: resuming unfinished runs"), status: .serviceUnavailable)
            case .draining: return JSONResponse.make(Ready(ready: false, reason: "draining: the gateway is stopping"), status: .serviceUnavailable)
            }
        }
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
