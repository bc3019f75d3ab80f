import Foundation

/// An absolute http(s) URL reduced to what a request needs, its host parsed as
/// strictly as the egress proxy parses one (`HostName`): the name the decision
/// checks, the name TLS verifies and the Host header are one and the same.
struct OutboundURL: Sendable, Equatable {
    enum Scheme: String, Sendable {
        case http, https
        var defaultPort: Int { self == .https ? 443 : 80 }
    }

    /// Scheme, host and port: what decides whether a redirect leaves the origin.
    struct Origin: Sendable, Equatable {
        let scheme: Scheme
        let host: HostName
        let port: Int
    }

    let scheme: Scheme
    let host: HostName
    let port: Int
    /// The request target in origin form: path and query, never empty.
    let target: String

    var origin: Origin { Origin(scheme: scheme, host: host, port: port) }

    /// As the Host header carries it: the port only when not the scheme's own.
    var authority: String {
        let h = if case .ipv6 = host { "[\(host.text)]" } else { host.text }
        return port == scheme.defaultPort ? h : "\(h):\(port)"
    }

    var text: String { "\(scheme.rawValue)://\(authority)\(target)" }

    /// `raw`, or why it is not a URL this client requests. Printable ASCII
    /// only: a request target with spaces or controls could be read
    /// differently by the origin, and a caller percent-encodes the rest.
    static func parse(_ raw: String) -> Result<OutboundURL, Reason> {
        guard !raw.isEmpty, raw.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            return .failure(Reason("\(raw.debugDescription) has spaces, control or non-ASCII characters"))
        }
        guard let url = URLComponents(string: raw), let rawScheme = url.scheme else {
            return .failure(Reason("\(raw) is not an absolute URL"))
        }
        guard let scheme = Scheme(rawValue: rawScheme.lowercased()) else {
            return .failure(Reason("\(raw): only http and https URLs"))
        }
        guard url.user == nil, url.password == nil else { return .failure(Reason("credentials in the URL")) }
        guard let rawHost = url.percentEncodedHost, !rawHost.isEmpty, let host = HostName.parse(rawHost) else {
            return .failure(Reason("\(raw): the host is not a DNS name or an IP address"))
        }
        let port = url.port ?? scheme.defaultPort
        guard (1...65535).contains(port) else { return .failure(Reason("\(raw): port \(port) is out of range")) }
        let path = url.percentEncodedPath.isEmpty ? "/" : url.percentEncodedPath
        guard path.hasPrefix("/") else { return .failure(Reason("\(raw): the path is not absolute")) }
        let target = path + (url.percentEncodedQuery.map { "?" + $0 } ?? "")
        return .success(OutboundURL(scheme: scheme, host: host, port: port, target: target))
    }

    /// A redirect's `Location`, which may be relative to this URL.
    func resolve(_ location: String) -> Result<OutboundURL, Reason> {
        guard location.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }),
              let base = URL(string: text), let resolved = URL(string: location, relativeTo: base)?.absoluteString else {
            return .failure(Reason("the Location \(location.debugDescription) is not a URL"))
        }
        return Self.parse(resolved)
    }

    struct Reason: Error {
        let text: String
        init(_ text: String) { self.text = text }
    }
}
