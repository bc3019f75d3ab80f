import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Wire
import Workflow

/// Webhook deliveries (`/hooks/<path>`): the trigger looked up, its signature
/// header checked before the body is read, the body capped while it streams.
extension API {
    func addWebhookRoutes(_ router: Router<GatewayContext>) {
        for method in [HTTPRequest.Method.post, .put, .patch, .get, .delete] {
            router.on("/hooks/**", method: method) { request, context -> Response in
                let path = context.parameters.getCatchAll().joined(separator: "/")
                guard let (_, hook) = await scheduler.hook(method: method.rawValue, path: path) else {
                    let status: HTTPResponse.Status = await scheduler.servesPath(path) ? .methodNotAllowed : .notFound
                    throw APIError(status: status, code: status == .notFound ? .notFound : .methodNotAllowed,
                                   message: status == .notFound ? "no webhook at /hooks/\(path)" : "\(method) is not served at /hooks/\(path)")
                }
                // A reload may have made it non-public after the auth check let the request through as public.
                if !hook.isPublic, context.principal == nil {
                    throw APIError(status: .unauthorized, code: .unauthorized, message: "this webhook needs a token")
                }
                let names = Set(request.headers.map { $0.name.canonicalName.lowercased() })
                if let missing = TriggerScheduler.missingSignatureHeader(hook, names: names) {
                    await scheduler.refuseUnsigned(method: method.rawValue, path: path, header: missing)
                    throw APIError(status: .unauthorized, code: .badSignature, message: "the delivery's signature is not valid",
                                   headers: [.connection: "close"])
                }
                var request = request
                let raw: ByteBuffer
                do { raw = try await request.collectBody(upTo: hook.maxBodyBytes) } catch is NIOTooManyBytesError {
                    // Refused as soon as the cap is passed; the rest is never read.
                    throw APIError(status: .contentTooLarge, code: .payloadTooLarge,
                                   message: "the delivery is larger than the webhook's maxBodyKB (\(hook.maxBodyBytes >> 10) KB)",
                                   headers: [.connection: "close"])
                }
                var query: [String: String] = [:]
                for (k, v) in request.uri.queryParameters { query[String(k)] = String(v) }
                let delivery = TriggerScheduler.Delivery(method: method.rawValue, path: path,
                                                         headers: request.headers.map { ($0.name.canonicalName, $0.value) },
                                                         query: query, body: Array(raw.readableBytesView))
                let secrets = runs.secrets
                let result = await scheduler.deliver(delivery, authenticated: context.principal != nil) { name in (try? secrets.value(of: name)).flatMap { $0 }.map { Array($0.utf8) } }
                struct Body: Encodable {
                    let trigger: String
                    var runId: String?
                    var buffered: Bool?
                    var duplicate: Bool?
                }
                switch result {
                case let .fired(runId, trigger):
                    return JSONResponse.make(Body(trigger: trigger, runId: runId), status: .accepted, headers: [.location: "/runs/\(runId)"])
                case let .buffered(trigger):
                    return JSONResponse.make(Body(trigger: trigger, buffered: true), status: .accepted)
                case let .duplicate(runId, trigger):
                    return JSONResponse.make(Body(trigger: trigger, runId: runId, duplicate: true), status: .ok)
                case let .rejected(status, message, retryAfter):
                    let code: APIErrorCode = switch status {
                    case 401: .badSignature
                    case 404: .notFound
                    case 405: .methodNotAllowed
                    case 422: .invalidInput
                    case 429: .tooManyRequests
                    case 503: .unavailable
                    default: .badRequest
                    }
                    var headers: HTTPFields = [:]
                    if let retryAfter { headers[.retryAfter] = "\(retryAfter)" }
                    throw APIError(status: HTTPResponse.Status(code: status), code: code, message: message, headers: headers)
                }
            }
        }
    }
}
