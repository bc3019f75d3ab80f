import Foundation
import Hummingbird

extension API {
    /// `GET /openapi.yaml`: the API's description, as built into this binary.
    func addOpenAPIRoutes(_ router: Router<GatewayContext>) {
        router.get("/openapi.yaml") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "application/yaml; charset=utf-8"],
                     body: ResponseBody(byteBuffer: ByteBuffer(bytes: PackageResources.openapi_yaml)))
        }
    }
}
