import Foundation
import HTTPTypes
import Hummingbird
import Wire
import Workflow
import Yams

/// Triggers (declared and operator schedules): list, inspect with upcoming
/// fire times, fire by hand, pause and unpause; schedules added, removed and back-filled.
extension API {
    var scheduler: TriggerScheduler { gateway.scheduler }

    func addTriggerRoutes(_ router: Router<GatewayContext>) {
        router.get("/triggers") { request, _ -> Response in
            var list = await scheduler.list()
            if let w = try request.nonEmptyQuery("workflow") { list = list.filter { $0.workflow == w } }
            if let k = try request.nonEmptyQuery("kind") {
                guard let kind = TriggerKind.Name(rawValue: k) else {
                    throw APIError.badRequest("kind must be one of \(TriggerKind.Name.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                list = list.filter { $0.kind == kind }
            }
            struct Body: Encodable { let triggers: [TriggerView] }
            return JSONResponse.make(Body(triggers: list))
        }

        router.get("/triggers/:id") { request, context -> Response in
            let id = try context.parameters.require("id")
            let n = try request.intQuery("upcoming", default: 5, range: 0...100)
            guard let view = await scheduler.view(id, upcoming: n) else { throw APIError.notFound("no trigger \(id)") }
            return JSONResponse.make(view)
        }

        router.post("/triggers/:id/fire") { request, context -> Response in
            let id = try context.parameters.require("id")
            var request = request
            let body = try await request.optionalJSONObject(limit: maxBodyBytes)
            try body.onlyKeys(["input", "overlap"])
            var policy: OverlapPolicy?
            if let o = body["overlap"] {
                guard case let .string(text) = o, let p = OverlapPolicy(rawValue: text) else {
                    throw APIError.badRequest("overlap must be one of \(OverlapPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                policy = p
            }
            let outcome: TriggerScheduler.FireOutcome
            do { outcome = try await scheduler.fire(id, input: body["input"], policy: policy, actor: context.caller.name) } catch {
                throw Self.triggerError(error)
            }
            return Self.fireResponse(outcome, trigger: id)
        }

        for (action, paused) in [("pause", true), ("unpause", false)] {
            router.post("/triggers/:id/\(action)") { request, context -> Response in
                let id = try context.parameters.require("id")
                var request = request
                let body = try await request.optionalJSONObject(limit: maxBodyBytes)
                try body.onlyKeys(["note"])
                var note: String?
                if let n = body["note"] {
                    guard case let .string(text) = n, text.count <= 1000 else { throw APIError.badRequest("note must be a string of at most 1000 characters") }
                    note = text
                }
                do { return JSONResponse.make(try await scheduler.setPaused(id, paused, note: note, actor: context.caller.name)) } catch {
                    throw Self.triggerError(error)
                }
            }
        }

        router.get("/schedules") { _, _ -> Response in
            struct Body: Encodable { let schedules: [TriggerView] }
            return JSONResponse.make(Body(schedules: await scheduler.list().filter { $0.source == .operator }))
        }

        router.post("/schedules") { request, context -> Response in
            var request = request
            var body = try await request.jsonObject(limit: maxBodyBytes)
            guard case let .string(workflow)? = body.removeValue(forKey: "workflow"), !workflow.isEmpty else {
                throw APIError.badRequest("'workflow' is required: the id of a valid workflow")
            }
            let trigger = try Self.schedule(from: body)
            do {
                let view = try await scheduler.addSchedule(workflow: workflow, trigger: trigger, actor: context.caller.name)
                return JSONResponse.make(view, status: .created, headers: [.location: "/triggers/\(view.id)"])
            } catch {
                throw Self.triggerError(error)
            }
        }

        router.delete("/schedules/:id") { _, context -> Response in
            let id = try context.parameters.require("id")
            do { try await scheduler.removeSchedule(id, actor: context.caller.name) } catch { throw Self.triggerError(error) }
            struct Body: Encodable { let removed: String }
            return JSONResponse.make(Body(removed: id))
        }

        router.post("/schedules/:id/backfill") { request, context -> Response in
            let id = try context.parameters.require("id")
            var request = request
            let body = try await request.jsonObject(limit: maxBodyBytes)
            try body.onlyKeys(["from", "to"])
            func instant(_ key: String) throws -> Date {
                guard case let .string(text)? = body[key], let d = try? Date(text, strategy: .iso8601) else {
                    throw APIError.badRequest("'\(key)' is required: an ISO-8601 instant such as 2026-11-30T00:00:00Z")
                }
                return d
            }
            let from = try instant("from"), to = try instant("to")
            do {
                let n = try await scheduler.backfill(id, from: from, to: to, actor: context.caller.name)
                struct Body: Encodable { let trigger: String; let buffered: Int }
                return JSONResponse.make(Body(trigger: id, buffered: n), status: .accepted)
            } catch let error as TriggerScheduler.BackfillError {
                switch error {
                case .notFound: throw APIError.notFound("no trigger \(id)")
                case .notTimeBased: throw APIError.badRequest("\(id) is not a cron, every or at trigger: it has no slots to back-fill")
                case let .badRange(why): throw APIError.badRequest(why)
                }
            }
        }
    }

    /// A schedule's body is read exactly as a workflow's `triggers:` entry is (JSON is YAML).
    static func schedule(from body: [String: JSONValue]) throws -> Trigger {
        let text = JSONValue.object(body).jsonText
        guard let node = try? Yams.compose(yaml: text) else { throw APIError.badRequest("the body cannot be read as a schedule") }
        var reader = NodeReader(file: "request")
        let trigger = reader.trigger(node, "")
        if !reader.issues.isEmpty || trigger == nil {
            let messages = reader.issues.map { ($0.path.isEmpty ? "" : "\($0.path.hasPrefix("(") ? "schedule" + $0.path : $0.path): ") + $0.message }
            throw APIError(status: .badRequest, code: .invalidSchedule, message: messages.joined(separator: "; "))
        }
        return trigger!
    }

    static func fireResponse(_ outcome: TriggerScheduler.FireOutcome, trigger: String) -> Response {
        struct Body: Encodable {
            let trigger: String
            let outcome: String
            var runId: String?
            var reason: String?
        }
        switch outcome {
        case let .fired(runId):
            return JSONResponse.make(Body(trigger: trigger, outcome: "fired", runId: runId), status: .accepted, headers: [.location: "/runs/\(runId)"])
        case .buffered:
            return JSONResponse.make(Body(trigger: trigger, outcome: "buffered"), status: .accepted)
        case let .skipped(why):
            return APIError(status: .conflict, code: .triggerBusy, message: "skipped: \(why)").response
        case let .dropped(why):
            return APIError(status: .conflict, code: .triggerBusy, message: "dropped: \(why)").response
        case let .failed(why):
            return APIError(status: .unprocessableContent, code: .fireFailed, message: why).response
        }
    }

    static func triggerError(_ error: any Error) -> any Error {
        switch error {
        case let e as TriggerScheduler.ControlError:
            switch e {
            case let .notFound(m): return APIError.notFound(m)
            case let .conflict(m): return APIError.conflict(m)
            case let .invalid(m): return APIError(status: .badRequest, code: .invalidSchedule, message: m)
            }
        case let RunService.SubmitError.paused(pause): return APIError.paused(pause)
        default: return error
        }
    }
}
