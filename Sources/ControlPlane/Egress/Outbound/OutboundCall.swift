import NIOHTTP1
import Workflow

/// A request as it goes out on one hop: checked once, up front, then rewritten
/// by each redirect the way browsers rewrite theirs.
struct OutboundCall: Sendable {
    private(set) var method: String
    private(set) var url: OutboundURL
    /// The caller's headers, less those a redirect has dropped.
    private(set) var headers: [(name: String, value: String)]
    private(set) var body: [UInt8]?
    private let injections: [OutboundInjection]
    private let firstOrigin: OutboundURL.Origin
    /// Set for good once a hop leaves the first origin: the caller's
    /// credentials were meant for that origin, not for wherever it redirects.
    private var leftOrigin = false

    /// They frame the message or the connection, which this client does itself
    /// (one request, `Connection: close`): a caller's value could desynchronise
    /// the origin's parser from ours or ask for a protocol switch.
    static let reserved: Set<String> = [
        "host", "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
    ]
    static let credentials: Set<String> = ["authorization", "cookie", "proxy-authorization"]
    /// They describe a body: dropped with it when a redirect turns the request into a GET.
    static let bodyHeaders: Set<String> = ["content-type", "content-encoding", "content-language", "content-location"]

    init(_ request: OutboundRequest, injections: [OutboundInjection], limits: OutboundLimits) throws(OutboundError) {
        guard Self.isToken(request.method) else { throw .invalidRequest("the method \(request.method.debugDescription) is not an HTTP token") }
        guard request.method != "CONNECT" else { throw .invalidRequest("CONNECT is not a request this client makes") }
        if request.method == "TRACE", request.body != nil { throw .invalidRequest("a TRACE request has no body") }
        switch OutboundURL.parse(request.url) {
        case let .success(url): self.url = url
        case let .failure(why): throw .invalidRequest(why.text)
        }
        for (name, value) in request.headers {
            try Self.check(header: name, value: value)
        }
        var canonical: [OutboundInjection] = []
        for injection in injections {
            guard let host = HostName.parse(injection.host) else {
                throw .invalidRequest("the injection host \(injection.host.debugDescription) is not a DNS name or an IP address")
            }
            if let port = injection.port, !(1...65535).contains(port) { throw .invalidRequest("the injection port \(port) is out of range") }
            try Self.check(header: injection.header, value: injection.value)
            canonical.append(OutboundInjection(host: host.text, port: injection.port, header: injection.header, value: injection.value))
        }
        guard limits.maxResponseBytes >= 0, limits.maxRedirects >= 0 else { throw .invalidRequest("negative limits") }
        guard request.timeout > .zero else { throw .invalidRequest("the timeout must be positive") }
        method = request.method
        headers = request.headers
        body = request.body
        self.injections = canonical
        firstOrigin = url.origin
    }

    /// RFC 9110 `tchar`s, at least one: the rule the loader checks header names by.
    static func isToken(_ s: String) -> Bool { CredentialRules.isToken(s) }

    /// A value is visible ASCII, spaces, tabs and obs-text: no CR, LF or NUL
    /// that could end the header (or the head) early on the origin's side.
    private static func check(header name: String, value: String) throws(OutboundError) {
        guard isToken(name) else { throw .invalidRequest("the header name \(name.debugDescription) is not an HTTP token") }
        guard !reserved.contains(name.lowercased()) else { throw .invalidRequest("the \(name) header is set by the gateway, not the request") }
        guard value.utf8.allSatisfy({ $0 == 9 || ($0 >= 0x20 && $0 != 0x7f) }) else {
            throw .invalidRequest("the \(name) header's value has control characters")
        }
    }

    /// The head for this hop: Host from the URL, the caller's headers, the
    /// injections whose host (and port) is this hop's, then framing.
    func head() -> HTTPRequestHead {
        var out = HTTPHeaders()
        out.add(name: "Host", value: url.authority)
        let matching = injections.filter { $0.host == url.host.text && ($0.port == nil || $0.port == url.port) }
        // An injected credential replaces whatever the caller put in its place.
        let replaced = Set(matching.map { $0.header.lowercased() })
        for (name, value) in headers where !replaced.contains(name.lowercased()) {
            out.add(name: name, value: value)
        }
        for injection in matching {
            out.add(name: injection.header, value: injection.value)
        }
        if !out.contains(name: "user-agent") { out.add(name: "User-Agent", value: "skelm") }
        if let body {
            out.add(name: "Content-Length", value: "\(body.count)")
        } else if !["GET", "HEAD", "OPTIONS", "DELETE", "TRACE"].contains(method) {
            // Without it NIO's encoder would announce a chunked body for a POST that has none.
            out.add(name: "Content-Length", value: "0")
        }
        out.add(name: "Connection", value: "close")
        return HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: url.target, headers: out)
    }

    /// The request a redirect with `status` makes of this one: 303 (but for
    /// HEAD), and 301 or 302 after a POST, become a GET without the body, as
    /// browsers do; 307 and 308 keep both.
    func redirected(to next: OutboundURL, status: Int) -> OutboundCall {
        var call = self
        call.url = next
        if (status == 303 && method != "HEAD") || ((status == 301 || status == 302) && method == "POST") {
            call.method = "GET"
            call.body = nil
            call.headers.removeAll { Self.bodyHeaders.contains($0.name.lowercased()) }
        }
        if next.origin != firstOrigin { call.leftOrigin = true }
        if call.leftOrigin {
            call.headers.removeAll { Self.credentials.contains($0.name.lowercased()) }
        }
        return call
    }
}
