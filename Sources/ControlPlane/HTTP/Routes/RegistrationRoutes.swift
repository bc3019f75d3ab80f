import Foundation
import Hummingbird

extension API {
    /// `GET /v1/workflows`, `POST /v1/workflows/register`, `PUT/DELETE /v1/workflows/:id`.
    func addRegistrationRoutes(_ router: Router<GatewayContext>) {
    }
}
