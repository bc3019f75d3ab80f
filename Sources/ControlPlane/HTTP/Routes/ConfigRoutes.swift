import Foundation
import Hummingbird
import Workflow

extension API {
    /// `GET/PATCH /v1/config`: the running config, and its hot keys.
    func addConfigRoutes(_ router: Router<GatewayContext>) {
        // The config holds where secrets live (an environment variable's name,
        // a secret's name), never a value: it is shown whole.
        router.get("/v1/config") { _, _ -> Response in
            struct Shown: Encodable {
                let config: [String: String]
                let configPath: String?
                let hotKeys: [String]
            }
            return JSONResponse.make(Shown(config: ConfigDiff.flatten(gateway.running), configPath: gateway.configPath,
                                           hotKeys: ConfigPatch.hotKeys))
        }
        router.patch("/v1/config") { request, context -> Response in
            var request = request
            let body = try await request.jsonObject(limit: maxBodyBytes)
            do {
                let report = try await gateway.patch(ConfigPatch.flatten(body), actor: context.caller.name)
                return JSONResponse.make(report)
            } catch let refusal as ConfigPatch.Refusal {
                throw APIError.badRequest(refusal.description, code: .invalidConfig)
            }
        }
    }
}
