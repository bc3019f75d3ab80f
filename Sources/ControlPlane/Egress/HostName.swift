import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A destination as the egress proxy accepts it: a DNS name or an IP literal,
/// and nothing else. Everything a step sends is parsed through this before any
/// `allowHosts` pattern sees it, because the patterns compare text while the
/// resolver reads C strings: `127.0.0.1\0.example.com` matched `*.example.com`
/// as text and resolved as `127.0.0.1`. A name is ASCII letters, digits and
/// hyphens in dot-separated labels (internationalized names in their `xn--`
/// form); a name the resolver would read as an address (`127.1`, `0x7f000001`,
/// `2130706433`) is refused too, since it is neither a name nor a literal.
public enum HostName: Equatable, Sendable {
    case name(String)
    case ipv4(String)
    case ipv6(String)

    /// The canonical text: lowercased name, or the address as `inet_ntop` writes it.
    public var text: String {
        switch self {
        case let .name(n): n
        case let .ipv4(a), let .ipv6(a): a
        }
    }

    public var isLiteral: Bool {
        if case .name = self { return false }
        return true
    }

    /// `raw` as it came off the wire: an IPv6 literal may be bracketed.
    public static func parse(_ raw: String) -> HostName? {
        let bytes = Array(raw.utf8)
        guard (1...253).contains(bytes.count) else { return nil }
        // Only printable ASCII can be a host; this refuses NUL, spaces, percent
        // escapes' decoded forms and every non-ASCII byte before anything else.
        guard bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else { return nil }
        var text = raw
        if text.hasPrefix("[") || text.hasSuffix("]") {
            guard text.hasPrefix("["), text.hasSuffix("]"), text.count > 2 else { return nil }
            text = String(text.dropFirst().dropLast())
            return ipv6(text).map(HostName.ipv6)
        }
        if let v4 = ipv4(text) { return .ipv4(v4) }
        if text.contains(":") { return ipv6(text).map(HostName.ipv6) }
        let lower = text.lowercased()
        let labels = lower.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            guard (1...63).contains(label.utf8.count), label.first != "-", label.last != "-",
                  label.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d })
            else { return nil }
        }
        // A top-level label is never all digits; the resolver's inet_aton would
        // take such a "name" (or a hex one) as an address in a form no pattern names.
        if let last = labels.last, last.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) { return nil }
        var legacy = in_addr()
        if inet_aton(lower, &legacy) != 0 { return nil }
        return .name(lower)
    }

    /// `host:port` or `[v6]:port`, as in a CONNECT target or a Host header.
    public static func parseAuthority(_ raw: String, defaultPort: Int?) -> (host: HostName, port: Int)? {
        var hostPart = raw
        var port = defaultPort
        if raw.hasPrefix("[") {
            guard let close = raw.firstIndex(of: "]") else { return nil }
            hostPart = String(raw[...close])
            let rest = raw[raw.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { return nil }
                port = parsePort(rest.dropFirst())
                if port == nil { return nil }
            }
        } else if let colon = raw.lastIndex(of: ":") {
            hostPart = String(raw[..<colon])
            port = parsePort(raw[raw.index(after: colon)...])
            if port == nil { return nil }
        }
        guard let port, let host = parse(hostPart) else { return nil }
        return (host, port)
    }

    /// Digits only (no sign, no spaces), 1 to 65535.
    static func parsePort(_ s: Substring) -> Int? {
        guard (1...5).contains(s.utf8.count), s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let p = Int(s),
              (1...65535).contains(p) else { return nil }
        return p
    }

    private static func ipv4(_ s: String) -> String? {
        var a = in_addr()
        guard inet_pton(AF_INET, s, &a) == 1 else { return nil }
        var buf = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        guard inet_ntop(AF_INET, &a, &buf, socklen_t(buf.count)) != nil else { return nil }
        return text(of: buf)
    }

    private static func text(of buf: [CChar]) -> String {
        String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func ipv6(_ s: String) -> String? {
        // No zone ids (`fe80::1%eth0`): an interface name is not a destination.
        var a = in6_addr()
        guard !s.contains("%"), inet_pton(AF_INET6, s, &a) == 1 else { return nil }
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &a, &buf, socklen_t(buf.count)) != nil else { return nil }
        return text(of: buf)
    }
}
