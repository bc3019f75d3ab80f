import Foundation
import Hummingbird

extension API {
    /// `POST /gateway/{pause,resume,reload}`
    func addGatewayRoutes(_ router: Router<GatewayContext>) {
    }
}
