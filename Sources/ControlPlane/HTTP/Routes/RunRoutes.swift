import Foundation
import HTTPTypes
import Hummingbird
import Workflow

extension API {
    func addRunRoutes(_ router: Router<GatewayContext>) {
        router.post("/runs") { request, context -> Response in
            var request = request
            let body = try await request.jsonObject(limit: maxBodyBytes)
            try body.onlyKeys(["workflow", "input", "mode"])
            guard case let .string(workflow)? = body["workflow"], !workflow.isEmpty else {
                throw APIError.badRequest("'workflow' is required: the id of a registered workflow")
            }
            let input = body["input"] ?? .object([:])
            let mode = body["mode"]?.stringValue ?? "async"
            guard mode == "sync" || mode == "async" else { throw APIError.badRequest("'mode' must be \"sync\" or \"async\"") }
            let key = request.headers[HTTPField.Name("Idempotency-Key")!]
            if let key, key.isEmpty || key.count > 255 { throw APIError.badRequest("Idempotency-Key must be 1 to 255 characters") }

            let run: RunRecord, created: Bool
            let ending = mode == "sync" ? RunEnding() : nil
            do {
                (run, created) = try await runs.submit(workflow: workflow, input: input, idempotencyKey: key, actor: context.caller.name, ending: ending)
            } catch let error as RunService.SubmitError {
                switch error {
                case let .unknownWorkflow(id): throw APIError.notFound("no valid workflow named \(id) (see GET /registry/workflows)")
                case let .invalidInput(violations):
                    throw APIError(status: .badRequest, code: .invalidInput,
                                   message: "input does not match the workflow's schema: " + violations.map(\.description).joined(separator: "; "))
                case let .idempotencyConflict(other):
                    throw APIError.conflict("Idempotency-Key was already used for a different request (run \(other))")
                case let .invalidPermissions(why): throw APIError.badRequest(why, code: .invalidPermissions)
                case .stopping: throw APIError.unavailable("the gateway is shutting down")
                case let .paused(pause): throw APIError.paused(pause)
                case .unregistered:
                    throw APIError.badRequest("\(error)")
                }
            }
            var headers: HTTPFields = [.location: "/runs/\(run.id)"]
            if !created { headers[HTTPField.Name("Idempotent-Replayed")!] = "true" }
            if let ending {
                // The record read when it ended, or (it parked, it had already ended) read now.
                let ended = created ? await ending.record : await runs.waitUntilFinished(run.id)
                var done = ended
                if done == nil { done = try await store.run(run.id) }
                guard let done else { throw APIError.notFound("run \(run.id) vanished") }
                return JSONResponse.make(done, status: .ok, headers: headers)
            }
            return JSONResponse.make(run, status: created ? .accepted : .ok, headers: headers)
        }

        router.get("/runs") { request, _ -> Response in
            let limit = try request.intQuery("limit", default: 50, range: 1...1000)
            let since = try request.instantQuery("since"), until = try request.instantQuery("until")
            if let since, let until, since >= until { throw APIError.badRequest("since must be before until") }
            let before = try request.nonEmptyQuery("before")
            // One more than asked: whether it comes back says if there is a next page,
            // so the last page says so itself instead of leading to an empty one.
            let list: [RunRecord]
            do {
                list = try await store.list(status: try request.runStatusQuery(), workflow: try request.nonEmptyQuery("workflow"),
                                            trigger: try request.nonEmptyQuery("trigger"), since: since, until: until, limit: limit + 1, before: before)
            } catch let error as RunStore.UnknownCursor {
                throw APIError.badRequest("before must be the id of a run (a page's next); there is no run \(error.id)")
            }
            struct Page: Encodable {
                let runs: [RunRecord]
                let next: String?
                enum CodingKeys: String, CodingKey { case runs, next }
                // `next: null` on the last page, not a missing key.
                func encode(to encoder: any Encoder) throws {
                    var c = encoder.container(keyedBy: CodingKeys.self)
                    try c.encode(runs, forKey: .runs)
                    try c.encode(next, forKey: .next)
                }
            }
            let page = Array(list.prefix(limit))
            return JSONResponse.make(Page(runs: page, next: list.count > limit ? page.last?.id : nil))
        }

        router.get("/runs/:id") { _, context -> Response in
            let id = try context.parameters.require("id")
            guard let run = try await store.run(id) else { throw APIError.notFound("no run \(id)") }
            return JSONResponse.make(run)
        }

        // The output a `wait` step waits for: `{output, step?}`. `step` (its
        // path) may be left out while the run waits on one wait step only.
        router.post("/runs/:id/resume") { request, context -> Response in
            let id = try context.parameters.require("id")
            var request = request
            let body = try await request.jsonObject(limit: maxBodyBytes)
            try body.onlyKeys(["output", "step"])
            guard let output = body["output"] else { throw APIError.badRequest("'output' is required: the value the wait step takes as its output") }
            var step: String?
            if let s = body["step"] {
                guard case let .string(text) = s, !text.isEmpty else { throw APIError.badRequest("'step' must be the path of a wait step") }
                step = text
            }
            do {
                return JSONResponse.make(try await runs.resume(runId: id, step: step, output: output, actor: context.caller.name))
            } catch let error as RunService.ResumeError {
                switch error {
                case .notFound: throw APIError.notFound("no run \(id)")
                case let .notWaiting(why): throw APIError.conflict(why)
                case let .ambiguous(steps):
                    throw APIError.badRequest("run \(id) waits on several wait steps; name one with 'step' (\(steps.joined(separator: ", ")))")
                case let .invalidOutput(violations):
                    throw APIError(status: .badRequest, code: .invalidInput,
                                   message: "output does not match the wait step's schema: " + violations.map(\.description).joined(separator: "; "))
                }
            }
        }

        router.post("/runs/:id/cancel") { _, context -> Response in
            let id = try context.parameters.require("id")
            guard let run = try await runs.cancel(id, actor: context.caller.name) else { throw APIError.notFound("no run \(id)") }
            return JSONResponse.make(run)
        }
    }
}
