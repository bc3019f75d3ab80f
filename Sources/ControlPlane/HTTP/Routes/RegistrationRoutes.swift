import Foundation
import HTTPTypes
import Hummingbird
import Wire
import MultipartKit
import NIOCore
import Workflow

extension API {
    /// `GET /v1/workflows`, `POST /v1/workflows/register`, `PUT/DELETE /v1/workflows/:id`.
    func addRegistrationRoutes(_ router: Router<GatewayContext>) {
        router.get("/v1/workflows") { _, _ -> Response in
            struct List: Encodable { let workflows: [WorkflowRegistry.Entry] }
            return JSONResponse.make(List(workflows: await registry.list()))
        }
        router.post("/v1/workflows/register") { request, context -> Response in
            try await audited(context, "workflow.register_refused", route: "POST /v1/workflows/register", id: nil) {
                let candidate = try await readSource(request)
                let entries = try await registry.register(candidate, by: context.caller.name)
                return JSONResponse.make(Registered(registered: entries), status: .created)
            }
        }
        router.put("/v1/workflows/:id") { request, context -> Response in
            let id = try context.parameters.require("id")
            return try await audited(context, "workflow.register_refused", route: "PUT /v1/workflows/\(id)", id: id) {
                // 404 and 409 before the body is read; checked again when the change is made.
                try await registry.registrationDefining(id)
                let candidate = try await readSource(request)
                let entries = try await registry.replace(id, with: candidate, by: context.caller.name)
                return JSONResponse.make(Registered(registered: entries))
            }
        }
        router.delete("/v1/workflows/:id") { _, context -> Response in
            let id = try context.parameters.require("id")
            return try await audited(context, "workflow.unregister_refused", route: "DELETE /v1/workflows/\(id)", id: id) {
                try await registry.unregister(id, by: context.caller.name)
                return Response(status: .noContent)
            }
        }
    }

    private struct Registered: Encodable { let registered: [WorkflowRegistry.Entry] }

    /// Runs `body`; a refusal is audited with its reason and answered in the
    /// API's error shape (a 422 also lists every issue).
    private func audited(_ context: GatewayContext, _ action: String, route: String, id: String?,
                         _ body: () async throws -> Response) async throws -> Response {
        do {
            return try await body()
        } catch {
            let refusal = Self.apiError(error)
            var details = ["route": route, "status": "\(refusal.status.code)", "code": refusal.code.rawValue, "reason": refusal.message]
            if let id { details["workflow"] = id }
            _ = try? await audit.append(actor: context.caller.name, action: action, details: details)
            if case let .invalid(issues)? = error as? RegistrationError {
                struct Invalid: Encodable {
                    struct Inner: Encodable { let code: String, message: String }
                    let error: Inner
                    let issues: [WorkflowIssue]
                }
                return JSONResponse.make(Invalid(error: .init(code: refusal.code.rawValue, message: refusal.message), issues: issues),
                                         status: .unprocessableContent)
            }
            throw refusal
        }
    }

    private static func apiError(_ error: any Error) -> APIError {
        switch error {
        case let e as APIError: return e
        case let e as RegistrationError:
            let (status, code): (HTTPResponse.Status, APIErrorCode) = switch e {
            case .badSource: (.badRequest, .badRequest)
            case .forbidden: (.forbidden, .forbidden)
            case .notFound: (.notFound, .notFound)
            case .conflict: (.conflict, .conflict)
            case .tooLarge: (.contentTooLarge, .payloadTooLarge)
            case .invalid: (.unprocessableContent, .invalidWorkflow)
            case .unavailable: (.serviceUnavailable, .unavailable)
            }
            return APIError(status: status, code: code, message: e.description)
        case is NIOTooManyBytesError:
            return APIError(status: .contentTooLarge, code: .payloadTooLarge, message: "request body is larger than server.maxBodyKB allows")
        case let e as HTTPError where e.status == .contentTooLarge:
            return APIError(status: .contentTooLarge, code: .payloadTooLarge, message: "request body is larger than server.maxBodyKB allows")
        default:
            return APIError(status: .internalServerError, code: .internal, message: "internal error: \(error)")
        }
    }

    // MARK: Reading the source

    /// JSON `{"source": {"type": "path", "path"}}`, or a zip as the `file` part
    /// of a `multipart/form-data` body.
    private func readSource(_ request: Request) async throws -> RegistrationCandidate {
        guard let settings = await registry.registrationSettings else {
            throw RegistrationError.unavailable("this gateway takes no registrations")
        }
        let contentType = request.headers[.contentType] ?? ""
        let media = contentType.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
        var request = request
        switch media {
        case "application/json":
            let path = try Self.sourcePath(try await request.jsonObject(limit: maxBodyBytes))
            return try RegistrationCandidate.path(path, settings)
        case "multipart/form-data":
            let boundary = try Self.boundary(contentType)
            let body: ByteBuffer
            do {
                // The form around the zip: its headers and boundaries.
                body = try await request.collectBody(upTo: settings.limits.maxZipBytes + 16 << 10)
            } catch let e where e is NIOTooManyBytesError || (e as? HTTPError)?.status == .contentTooLarge {
                throw RegistrationError.tooLarge("the upload is larger than workflows.upload.maxZipKB (\(settings.limits.maxZipBytes >> 10) KB) allows")
            }
            return try RegistrationCandidate.upload(try Self.filePart(body, boundary: boundary), settings)
        default:
            throw APIError(status: .unsupportedMediaType, code: .unsupportedMediaType,
                           message: "send {\"source\": {\"type\": \"path\", \"path\": …}} as application/json, or a zip as multipart/form-data in a part named file")
        }
    }

    private static func sourcePath(_ body: [String: JSONValue]) throws(RegistrationError) -> String {
        if let extra = body.keys.first(where: { $0 != "source" }) { throw .badSource("unknown field '\(extra)'; the body is {\"source\": {…}}") }
        guard case let .object(source)? = body["source"] else { throw .badSource("source is required: {\"source\": {\"type\": \"path\", \"path\": …}}") }
        switch source["type"] {
        case "path":
            if let extra = source.keys.first(where: { $0 != "type" && $0 != "path" }) { throw .badSource("unknown field 'source.\(extra)'") }
            guard case let .string(path)? = source["path"] else { throw .badSource("source.path must be a string") }
            return path
        case "upload":
            throw .badSource("an upload is sent as multipart/form-data, the zip in a part named file")
        default:
            throw .badSource("source.type must be \"path\" (a zip is sent as multipart/form-data)")
        }
    }

    private static func boundary(_ contentType: String) throws(RegistrationError) -> String {
        for param in contentType.split(separator: ";").dropFirst() {
            let kv = param.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard kv.count == 2, kv[0].lowercased() == "boundary" else { continue }
            let value = kv[1].hasPrefix("\"") && kv[1].hasSuffix("\"") && kv[1].count >= 2 ? String(kv[1].dropFirst().dropLast()) : kv[1]
            // RFC 2046: 1 to 70 characters.
            guard (1...70).contains(value.utf8.count) else { break }
            return value
        }
        throw .badSource("multipart/form-data needs a boundary of 1 to 70 characters in its Content-Type")
    }

    /// The one part named `file`; any other part is refused rather than ignored.
    private static func filePart(_ body: ByteBuffer, boundary: String) throws(RegistrationError) -> Data {
        let parser = MultipartParser(boundary: boundary)
        var parts: [(name: String?, body: ByteBuffer)] = []
        var name: String?
        var current = ByteBuffer()
        parser.onHeader = { field, value in
            guard field.lowercased() == "content-disposition" else { return }
            if let m = value.firstMatch(of: /(?:^|;)\s*name="([^"]*)"/) { name = String(m.1) }
            else if let m = value.firstMatch(of: /(?:^|;)\s*name=([^;\s]+)/) { name = String(m.1) }
        }
        parser.onBody = { chunk in current.writeBuffer(&chunk) }
        parser.onPartComplete = {
            parts.append((name, current))
            name = nil
            current = ByteBuffer()
        }
        do { try parser.execute(body) } catch { throw .badSource("the multipart/form-data body is malformed") }
        guard let file = parts.first(where: { $0.name == "file" }) else {
            throw .badSource("the form has no complete part named file (the zip goes there: -F file=@flows.zip)")
        }
        if let other = parts.first(where: { $0.name != "file" }) {
            throw .badSource("unexpected form part '\(other.name ?? "")'; send only the zip, in a part named file")
        }
        guard parts.count == 1 else { throw .badSource("the form has more than one part named file") }
        return Data(file.body.readableBytesView)
    }
}
