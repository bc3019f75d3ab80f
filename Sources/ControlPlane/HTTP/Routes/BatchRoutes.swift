import Foundation
import Hummingbird

extension API {
    /// `POST /v1/batch/{runs,cancel}`
    func addBatchRoutes(_ router: Router<GatewayContext>) {
    }
}
