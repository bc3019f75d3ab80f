import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Wire
import Workflow

/// Durable queues (`POST /v1/queues/:name/messages`, `GET /v1/queues/:name`,
/// redrive) and webhook deliveries (`/hooks/<path>`).
extension API {
    func addQueueRoutes(_ router: Router<GatewayContext>) {
        router.post("/v1/queues/:name/messages") { request, context -> Response in
            let name = try context.parameters.require("name")
            var request = request
            let body = try await request.jsonObject(limit: maxBodyBytes)
            try body.onlyKeys(["body", "dedupeId"])
            guard let message = body["body"] else { throw APIError.badRequest("'body' is required: the message (any JSON), which becomes the run's input") }
            var dedupe: String?
            if let d = body["dedupeId"] {
                guard case let .string(text) = d, !text.isEmpty, text.utf8.count <= 200 else {
                    throw APIError.badRequest("dedupeId must be a string of 1 to 200 bytes")
                }
                dedupe = text
            }
            struct Body: Encodable {
                let queue: String
                let message: QueueMessageView
                let duplicate: Bool
            }
            do {
                switch try await scheduler.enqueue(queue: name, body: message, dedupeId: dedupe) {
                case let .added(m):
                    return JSONResponse.make(Body(queue: name, message: QueueMessageView(m), duplicate: false), status: .accepted)
                case let .duplicate(m):
                    return JSONResponse.make(Body(queue: name, message: QueueMessageView(m), duplicate: true), status: .ok)
                }
            } catch TriggerScheduler.QueueError.unknownQueue {
                throw APIError.notFound("no queue trigger consumes a queue named \(name)")
            } catch let TriggerScheduler.QueueError.full(depth) {
                throw APIError(status: .tooManyRequests, code: .tooManyRequests,
                               message: "queue \(name) holds \(depth) waiting messages (its maxDepth); retry later", headers: [.retryAfter: "10"])
            }
        }

        router.get("/v1/queues/:name") { _, context -> Response in
            let name = try context.parameters.require("name")
            do { return JSONResponse.make(try await scheduler.queueView(name)) } catch TriggerScheduler.QueueError.unknownQueue {
                throw APIError.notFound("no queue named \(name)")
            }
        }

        router.post("/v1/queues/:name/redrive") { request, context -> Response in
            let name = try context.parameters.require("name")
            var request = request
            let body = try await request.optionalJSONObject(limit: maxBodyBytes)
            try body.onlyKeys(["ids"])
            var ids: [String]?
            if let v = body["ids"] {
                guard case let .array(items) = v, items.count <= 1000 else { throw APIError.badRequest("ids must be a list of at most 1000 message ids") }
                ids = try items.map {
                    guard case let .string(s) = $0 else { throw APIError.badRequest("ids must be a list of message ids") }
                    return s
                }
            }
            let n = try await scheduler.redrive(name, ids: ids, actor: context.caller.name)
            struct Body: Encodable { let queue: String; let redriven: Int }
            return JSONResponse.make(Body(queue: name, redriven: n))
        }
    }

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
