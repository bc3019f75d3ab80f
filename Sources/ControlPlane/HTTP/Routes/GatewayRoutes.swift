import Foundation
import Hummingbird
import Sandbox
import Workflow

extension API {
    /// `POST /gateway/{pause,resume,reload}`, `GET /gateway/status`.
    func addGatewayRoutes(_ router: Router<GatewayContext>) {
        router.get("/gateway/status") { _, _ -> Response in
            JSONResponse.make(await gateway.status())
        }
        router.post("/gateway/pause") { request, context -> Response in
            var request = request
            let body = try await request.optionalJSONObject(limit: maxBodyBytes)
            try body.onlyKeys(["reason"])
            let reason: String
            switch body["reason"] {
            case nil: reason = "paused by \(context.caller.name)"
            case let .string(s)?:
                guard !s.isEmpty, s.count <= 500 else { throw APIError.badRequest("'reason' must be 1 to 500 characters") }
                reason = s
            default: throw APIError.badRequest("'reason' must be a string")
            }
            if try fleetScope(request) {
                let pause = Admission.Pause(reason: reason, by: context.caller.name, since: Date())
                do { _ = try await store.setFleetPause(pause) } catch {
                    throw APIError(status: .serviceUnavailable, code: .unavailable, message: "cannot pause the fleet: \(PostgresEngine.describe(error))")
                }
                gateway.admission.setFleet(try await store.fleetPause())
                try await audit.append(actor: context.caller.name, action: "gateway.paused", details: ["reason": reason, "scope": "fleet"])
                gateway.logger.notice("fleet paused: every gateway refuses new runs", metadata: ["reason": "\(reason)", "by": "\(context.caller.name)"])
                return JSONResponse.make(await gateway.status())
            }
            let (_, notSaved) = gateway.admission.pause(reason: reason, by: context.caller.name)
            var details = ["reason": reason]
            if let notSaved {
                details["notSaved"] = notSaved
                gateway.logger.error("paused, but the pause could not be saved: a restart would lift it", metadata: ["error": "\(notSaved)"])
            }
            try await audit.append(actor: context.caller.name, action: "gateway.paused", details: details)
            gateway.logger.notice("paused: new runs are refused", metadata: ["reason": "\(reason)", "by": "\(context.caller.name)"])
            return JSONResponse.make(await gateway.status())
        }
        router.post("/gateway/resume") { request, context -> Response in
            if try fleetScope(request) {
                let lifted: Admission.Pause?
                do { lifted = try await store.setFleetPause(nil) } catch {
                    throw APIError(status: .serviceUnavailable, code: .unavailable, message: "cannot resume the fleet: \(PostgresEngine.describe(error))")
                }
                gateway.admission.setFleet(nil)
                if let lifted {
                    try await audit.append(actor: context.caller.name, action: "gateway.resumed", details: [
                        "pausedBy": lifted.by, "reason": lifted.reason, "scope": "fleet",
                    ])
                    gateway.logger.notice("fleet resumed: new runs are taken again", metadata: ["by": "\(context.caller.name)"])
                }
                return JSONResponse.make(await gateway.status())
            }
            let lifted: Admission.Pause?
            do { lifted = try gateway.admission.resume() } catch {
                throw APIError(status: .internalServerError, code: .internal, message: "cannot lift the pause: \(error)")
            }
            if let lifted {
                try await audit.append(actor: context.caller.name, action: "gateway.resumed", details: [
                    "pausedBy": lifted.by, "reason": lifted.reason,
                ])
                gateway.logger.notice("resumed: new runs are taken again", metadata: ["by": "\(context.caller.name)"])
            }
            return JSONResponse.make(await gateway.status())
        }
        router.get("/gateway/fleet") { _, _ -> Response in
            guard store.shared != nil else {
                throw APIError(status: .notFound, code: .notFound, message: "this gateway has no fleet: it keeps its runs in SQLite (storage.driver postgres shares a database)")
            }
            return JSONResponse.make(FleetView(gateway: store.member, leader: gateway.role.leads, pause: gateway.admission.fleetPause,
                                               members: try await store.members()))
        }
        router.post("/gateway/reload") { _, context -> Response in
            let report = await gateway.reload(actor: context.caller.name, trigger: .api)
            if case .rejected = report.outcome {
                return JSONResponse.make(report, status: .unprocessableContent)
            }
            return JSONResponse.make(report)
        }
    }
}

/// `GET /gateway/fleet`: the gateways sharing this one's database.
struct FleetView: Encodable, Sendable {
    /// This gateway's id.
    let gateway: String
    /// Whether this gateway leads (fires the time-based triggers).
    let leader: Bool
    /// The fleet's pause, if any (each gateway may also be paused on its own).
    let pause: Admission.Pause?
    let members: [RunStore.Member]
}

extension API {
    /// `?scope=gateway` (the default) or `?scope=fleet`: every gateway sharing the database.
    func fleetScope(_ request: Request) throws -> Bool {
        switch request.uri.queryParameters.get("scope") {
        case nil, "gateway": return false
        case "fleet":
            guard store.shared != nil else {
                throw APIError.badRequest("scope=fleet needs gateways sharing a database (storage.driver postgres); this one keeps its runs in SQLite")
            }
            return true
        case let other?: throw APIError.badRequest("scope must be gateway or fleet, not '\(other)'")
        }
    }
}

extension Request {
    /// A JSON object body that may also be left out (an empty body is `{}`).
    /// Hummingbird keeps the collected body, so the second read costs nothing.
    mutating func optionalJSONObject(limit: Int) async throws -> [String: JSONValue] {
        let buffer = try await collectBody(upTo: limit)
        if buffer.readableBytes == 0 { return [:] }
        return try await jsonObject(limit: limit)
    }
}

extension Dictionary where Key == String, Value == JSONValue {
    /// 400 naming the first field the route does not know (a typo must not pass silently).
    func onlyKeys(_ known: Set<String>) throws {
        if let extra = keys.sorted().first(where: { !known.contains($0) }) {
            throw APIError.badRequest("unknown field '\(extra)' (expected \(known.sorted().joined(separator: ", ")))")
        }
    }
}
