import Foundation

/// A request a step asks the control plane to make for it (`http` and
/// `infer` steps). Checked before anything is sent: see `OutboundCall`.
struct OutboundRequest: Sendable {
    /// An HTTP token (`GET`, `POST`, ...); CONNECT is not a request this client makes.
    var method: String
    /// Absolute `http://` or `https://`, printable ASCII, no userinfo.
    var url: String
    /// In the order given. No control characters, and none of the headers that
    /// frame the message or the connection (the client sets those itself).
    var headers: [(name: String, value: String)]
    var body: [UInt8]?
    /// For the whole request: every decision, connection and redirect.
    var timeout: Duration

    init(method: String = "GET", url: String, headers: [(name: String, value: String)] = [], body: [UInt8]? = nil,
         timeout: Duration = .seconds(30)) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
    }
}

/// A credential the control plane adds on the way out, so that it never enters
/// the sandbox. Added only to a hop whose host (and port, when one is named) is
/// exactly this one, checked again on every redirect: a redirect elsewhere
/// never carries it.
struct OutboundInjection: Sendable {
    var host: String
    var port: Int?
    var header: String
    var value: String

    init(host: String, port: Int? = nil, header: String, value: String) {
        self.host = host
        self.port = port
        self.header = header
        self.value = value
    }
}

struct OutboundLimits: Sendable {
    /// The final response's body, counted as it arrives.
    var maxResponseBytes: Int
    var maxRedirects: Int

    init(maxResponseBytes: Int = 10 << 20, maxRedirects: Int = 5) {
        self.maxResponseBytes = maxResponseBytes
        self.maxRedirects = maxRedirects
    }
}

/// A redirect, as the audit records it.
enum OutboundHop: Sendable, Equatable {
    case followed(from: String, to: String, status: Int)
    case refused(to: String, reason: String)
}

struct OutboundResponse: Sendable {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]
    /// Where the response came from, after any redirects.
    var url: String
    var hops: [OutboundHop]

    /// The first value of `name`, compared case-insensitively.
    func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }
}

/// The egress decision for one host and port: the one checked address to
/// connect to, or why not. The proxy's `decide` is one (it resolves names, so
/// a caller runs it off the event loops); it is asked again for every redirect.
typealias OutboundDecision = @Sendable (HostName, Int) async -> Result<(ip: String, sockaddr: Data), EgressDenial>
