import NIOCore
import NIOHTTP1
import NIOSSL

enum OutboundError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The request itself is malformed; nothing was sent.
    case invalidRequest(String)
    /// The egress decision refused the request's own destination.
    case refused(host: String, port: Int, reason: String)
    /// A redirect pointed somewhere this request may not go.
    case redirectRefused(to: String, reason: String)
    case tooManyRedirects(Int)
    case responseTooLarge(limit: Int)
    case timeout
    /// The calling task was cancelled.
    case cancelled
    case tls(String)
    case connection(String)

    var description: String {
        switch self {
        case let .invalidRequest(why): "invalid request: \(why)"
        case let .refused(host, port, reason): "request to \(host):\(port) refused: \(reason)"
        case let .redirectRefused(to, reason): "redirect to \(to) refused: \(reason)"
        case let .tooManyRedirects(limit): "more than \(limit) redirect\(limit == 1 ? "" : "s")"
        case let .responseTooLarge(limit): "the response body is larger than \(limit) bytes"
        case .timeout: "the request did not complete within its timeout"
        case .cancelled: "the request was cancelled"
        case let .tls(why): "TLS: \(why)"
        case let .connection(why): "connection: \(why)"
        }
    }

    /// What NIO threw during one hop, in these terms.
    static func classify(_ error: any Error, url: OutboundURL, ip: String) -> OutboundError {
        switch error {
        case let error as OutboundError:
            return error
        case let error as NIOSSLExtraError where error == .failedToValidateHostname:
            return .tls("the certificate presented at \(ip):\(url.port) does not name \(url.host.text)")
        case is NIOSSLError, is NIOSSLExtraError, is BoringSSLError:
            return .tls("with \(url.host.text) at \(ip): \(error)")
        case is HTTPParserError:
            return .connection("\(url.authority) sent a malformed response: \(error)")
        default:
            return .connection("\(url.authority) at \(ip): \(EgressConnection.reason(error))")
        }
    }
}
