import Foundation
import Hummingbird

extension API {
    /// A pending-approvals gauge past this reads as this: the scrape reads the
    /// rows, and a scrape must stay cheap however many runs wait.
    static let approvalsPendingCap = 10_000

    /// `GET /metrics`: Prometheus text (exposition format 0.0.4), viewer scope.
    func addMetricsRoutes(_ router: Router<GatewayContext>) {
        router.get("/metrics") { _, _ -> Response in
            // Gauges of state are read now rather than tracked event by event:
            // they cannot drift, and a restarted gateway reports its real queue.
            let r = await runs.counts
            let pending = (try? await store.approvals(status: .pending, limit: Self.approvalsPendingCap).count) ?? 0
            GatewayMetrics.shared.setState(runsQueued: r.queued, runsRunning: r.running, approvalsPending: pending,
                                           workers: await pool.counts)
            let body = MetricsBootstrap.registry.emitToBuffer()
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
        }
    }
}
