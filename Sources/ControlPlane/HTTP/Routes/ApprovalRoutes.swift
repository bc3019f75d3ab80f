import Foundation
import HTTPTypes
import Hummingbird
import Workflow

extension API {
    func addApprovalRoutes(_ router: Router<GatewayContext>) {
        router.get("/approvals") { request, _ -> Response in
            var status: ApprovalRecord.Status? = .pending
            if let s = request.query("status") {
                if s == "all" { status = nil } else {
                    guard let parsed = ApprovalRecord.Status(rawValue: s) else {
                        throw APIError.badRequest("status must be all or one of \(ApprovalRecord.Status.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    status = parsed
                }
            }
            let limit = try request.intQuery("limit", default: 100, range: 1...1000)
            struct Page: Encodable { let approvals: [ApprovalRecord] }
            return JSONResponse.make(Page(approvals: try await store.approvals(status: status, runId: request.query("run"), limit: limit)))
        }
        router.get("/approvals/:id") { _, context -> Response in
            let id = try context.parameters.require("id")
            guard let a = try await store.approval(id) else { throw APIError.notFound("no approval \(id)") }
            return JSONResponse.make(a)
        }
        for (verb, approve) in [("approve", true), ("deny", false)] {
            router.post("/approvals/:id/\(verb)") { request, context -> Response in
                let id = try context.parameters.require("id")
                var request = request
                let buffer = try await request.collectBody(upTo: maxBodyBytes)
                var body: [String: JSONValue] = [:]
                if buffer.readableBytes > 0 {
                    guard case let .object(o)? = JSONValue.parse(String(decoding: buffer.readableBytesView, as: UTF8.self)) else {
                        throw APIError.badRequest("the body must be a JSON object: {\"reason\"}", code: .invalidJSON)
                    }
                    body = o
                }
                if body["actor"] != nil {
                    throw APIError.badRequest("'actor' is not accepted: a decision is recorded under the caller the gateway authenticated (\(context.caller.name))")
                }
                if let extra = body.keys.first(where: { $0 != "reason" }) {
                    throw APIError.badRequest("unknown field '\(extra)' (expected reason)")
                }
                let actor = context.caller.name
                let reason = body["reason"]?.stringValue
                do {
                    return JSONResponse.make(try await runs.decide(approval: id, approve: approve, actor: actor, reason: reason))
                } catch let error as RunService.DecisionError {
                    switch error {
                    case .notFound: throw APIError.notFound("no approval \(id)")
                    case let .alreadyDecided(a):
                        throw APIError.conflict("approval \(id) was already \(a.status.rawValue)\(a.decidedBy.map { " by \($0)" } ?? "")")
                    }
                }
            }
        }
    }
}
