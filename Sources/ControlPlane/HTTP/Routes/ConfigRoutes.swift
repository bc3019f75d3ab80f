import Foundation
import Hummingbird

extension API {
    /// `GET/PATCH /v1/config`
    func addConfigRoutes(_ router: Router<GatewayContext>) {
    }
}
