import Foundation
import Hummingbird
import Workflow

extension API {
    /// `POST /v1/batch/{runs,cancel}`: many runs in one request, each with its own outcome.
    func addBatchRoutes(_ router: Router<GatewayContext>) {
        router.post("/v1/batch/runs") { request, context -> Response in
            var request = request
            let body = try await request.jsonObject(limit: maxBodyBytes)
            try body.onlyKeys(["runs"])
            let items = try batchItems(body["runs"], name: "runs")
            // A paused gateway refuses the whole batch, as it refuses one run:
            // the client retries it as a whole after a resume.
            if let pause = gateway.admission.paused { throw APIError.paused(pause) }
            var results: [BatchOutcome] = []
            results.reserveCapacity(items.count)
            for (i, item) in items.enumerated() {
                results.append(await startOne(i, item, actor: context.caller.name))
            }
            return JSONResponse.make(BatchReply(results: results))
        }
        router.post("/v1/batch/cancel") { request, context -> Response in
            var request = request
            let body = try await request.jsonObject(limit: maxBodyBytes)
            try body.onlyKeys(["runs"])
            let items = try batchItems(body["runs"], name: "runs")
            var results: [BatchOutcome] = []
            for (i, item) in items.enumerated() {
                guard case let .string(id) = item, !id.isEmpty else {
                    results.append(.init(index: i, description: .invalidInput, message: "each item of 'runs' must be a run id"))
                    continue
                }
                do {
                    guard let before = try await store.run(id, withSteps: false) else {
                        results.append(.init(index: i, description: .notFound, runId: id, message: "no run \(id)"))
                        continue
                    }
                    if before.status.isTerminal {
                        results.append(.init(index: i, description: .alreadyFinished, runId: id, status: before.status))
                        continue
                    }
                    let after = try await runs.cancel(id, actor: context.caller.name)
                    results.append(.init(index: i, description: after?.status == .cancelled ? .cancelled : .alreadyFinished,
                                         runId: id, status: after?.status))
                } catch {
                    results.append(.init(index: i, description: .cancelFailed, runId: id, message: "\(error)"))
                }
            }
            return JSONResponse.make(BatchReply(results: results))
        }
    }

    /// The list, checked against `server.maxBatchItems` (read live: a PATCH changes it).
    private func batchItems(_ value: JSONValue?, name: String) throws -> [JSONValue] {
        guard case let .array(items)? = value else { throw APIError.badRequest("'\(name)' is required: a list") }
        let cap = gateway.running.server.maxBatchItems
        guard !items.isEmpty else { throw APIError.badRequest("'\(name)' is empty") }
        guard items.count <= cap else {
            throw APIError(status: .contentTooLarge, code: .tooManyItems,
                           message: "\(items.count) items; at most \(cap) per request (server.maxBatchItems)")
        }
        return items
    }

    private func startOne(_ index: Int, _ item: JSONValue, actor: String) async -> BatchOutcome {
        guard case let .object(o) = item else {
            return .init(index: index, description: .invalidInput, message: "each item must be an object {workflow, input, idempotencyKey}")
        }
        if let extra = o.keys.sorted().first(where: { !["workflow", "input", "idempotencyKey"].contains($0) }) {
            return .init(index: index, description: .invalidInput, message: "unknown field '\(extra)'")
        }
        guard case let .string(workflow)? = o["workflow"], !workflow.isEmpty else {
            return .init(index: index, description: .invalidInput, message: "'workflow' is required")
        }
        var key: String?
        switch o["idempotencyKey"] {
        case nil, .null?: key = nil
        case let .string(s)? where (1...255).contains(s.count): key = s
        default: return .init(index: index, description: .invalidInput, message: "'idempotencyKey' must be 1 to 255 characters")
        }
        do {
            let (run, created) = try await runs.submit(workflow: workflow, input: o["input"] ?? .object([:]), idempotencyKey: key, actor: actor)
            return .init(index: index, description: created ? .started : .existing, runId: run.id, status: run.status)
        } catch let error as RunService.SubmitError {
            switch error {
            case .unknownWorkflow: return .init(index: index, description: .workflowNotFound, message: "no valid workflow named \(workflow)")
            case let .invalidInput(v):
                return .init(index: index, description: .invalidInput, message: v.map(\.description).joined(separator: "; "))
            case let .invalidPermissions(why): return .init(index: index, description: .startFailed, message: why)
            case let .idempotencyConflict(other):
                return .init(index: index, description: .startFailed, runId: other, message: "idempotencyKey was used for a different request")
            case .stopping: return .init(index: index, description: .startFailed, message: "the gateway is shutting down")
            case let .paused(p): return .init(index: index, description: .startFailed, message: "the gateway is paused: \(p.reason)")
            case .unregistered:
                return .init(index: index, description: .startFailed, message: "\(error)")
            }
        } catch {
            return .init(index: index, description: .startFailed, message: "\(error)")
        }
    }
}

/// One item's fate. `description` is stable: clients switch on it.
struct BatchOutcome: Encodable, Sendable {
    enum Description: String, Encodable, Sendable {
        case started, existing, cancelled
        case workflowNotFound = "workflow-not-found"
        case invalidInput = "invalid-input"
        case startFailed = "start-failed"
        case notFound = "not-found"
        case alreadyFinished = "already-finished"
        case cancelFailed = "cancel-failed"
    }
    let index: Int
    let description: Description
    var runId: String? = nil
    var status: RunStatus? = nil
    var message: String? = nil
}

struct BatchReply: Encodable, Sendable {
    let results: [BatchOutcome]
    var summary: [String: Int] {
        Dictionary(grouping: results, by: \.description.rawValue).mapValues(\.count)
    }
    enum CodingKeys: String, CodingKey { case results, summary }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(results, forKey: .results)
        try c.encode(summary, forKey: .summary)
    }
}
