import Foundation
import Hummingbird

extension API {
    /// `GET /v1/dashboard/*`: read-only aggregations computed in SQL.
    func addDashboardRoutes(_ router: Router<GatewayContext>) {
    }
}
