import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Wire
import Workflow

/// Durable queues: `POST /v1/queues/:name/messages`, `GET /v1/queues/:name`, redrive.
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
}
