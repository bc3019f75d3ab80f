import Foundation
import Hummingbird

extension API {
    /// `GET /metrics`: Prometheus text.
    func addMetricsRoutes(_ router: Router<GatewayContext>) {
    }
}
