import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Wire

/// Every error the API returns: `{"error": {"code", "message"}}` with its status.
public struct APIError: Error, Sendable {
    public let status: HTTPResponse.Status
    public let code: APIErrorCode
    public let message: String
    public var details: [String: String]? = nil
    /// Sent with the error (`WWW-Authenticate` on a 401).
    public var headers: HTTPFields = [:]

    public static func badRequest(_ message: String, code: APIErrorCode = .badRequest) -> APIError {
        APIError(status: .badRequest, code: code, message: message)
    }
    public static func notFound(_ message: String) -> APIError { APIError(status: .notFound, code: .notFound, message: message) }
    public static func conflict(_ message: String) -> APIError { APIError(status: .conflict, code: .conflict, message: message) }
    public static func unavailable(_ message: String) -> APIError {
        APIError(status: .serviceUnavailable, code: .unavailable, message: message)
    }

    /// An operator paused the gateway: new work is refused until it is resumed.
    static func paused(_ pause: Admission.Pause) -> APIError {
        APIError(status: .serviceUnavailable, code: .paused, message: "the gateway is paused: \(pause.reason)")
    }

    var response: Response {
        struct Body: Encodable {
            struct Inner: Encodable {
                let code: APIErrorCode
                let message: String
            }
            let error: Inner
        }
        return JSONResponse.make(Body(error: .init(code: code, message: message)), status: status, headers: headers)
    }
}

/// Turns whatever a route throws into the JSON error shape, so a client never
/// has to parse two kinds of error body.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return error.response
        } catch is NIOTooManyBytesError {
            return APIError(status: .contentTooLarge, code: .payloadTooLarge,
                            message: "request body is larger than server.maxBodyKB allows").response
        } catch let error as HTTPError {
            let code: APIErrorCode = switch error.status {
            case .notFound: .notFound
            case .contentTooLarge: .payloadTooLarge
            case .methodNotAllowed: .methodNotAllowed
            default: error.status.code < 500 ? .badRequest : .internal
            }
            let message = error.status == .contentTooLarge ? "request body is larger than server.maxBodyKB allows"
                : error.status == .notFound ? "no route for \(request.method) \(request.uri.path)"
                : error.body ?? error.status.reasonPhrase
            return APIError(status: error.status, code: code, message: message).response
        } catch let error as PostgresStoreError where error.isUnavailable {
            // The shared store is away (restarting, failing over): try again shortly, or at another gateway.
            var response = APIError.unavailable("\(error)").response
            response.headers[.retryAfter] = "5"
            return response
        } catch let error as StoreContended {
            // Concurrent writers kept conflicting past the store's retries: nothing was written.
            context.logger.warning("request not done: \(error)", metadata: ["path": "\(request.uri.path)"])
            var response = APIError.unavailable("\(error); nothing was written, try again").response
            response.headers[.retryAfter] = "1"
            return response
        } catch {
            context.logger.error("request failed", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            return APIError(status: .internalServerError, code: .internal, message: "internal error").response
        }
    }
}

enum JSONResponse {
    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted)))
        }
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    static func make(_ value: some Encodable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json; charset=utf-8"
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}
