@testable import ControlPlane
import Testing

/// The egress proxy's host parsing: every text a step sends as a host is a
/// DNS name or an IP literal, or it is refused before any pattern sees it.
@Suite("Egress host names")
struct HostNameTests {
    @Test("hosts that are not a DNS name or an IP literal are refused", arguments: [
        "127.0.0.1\u{0}.example.com",     // NUL: matched *.example.com as text, resolved as 127.0.0.1
        "evil.com\u{0}",
        "exa mple.com", "example.com.", ".example.com", "a..b.com", "-a.com", "a-.com",
        "ex%41mple.com", "exämple.com", "example.com\r\nX: y",
        "127.1", "2130706433", "0x7f000001", "0x7f.0.0.1", "1.2.3.04",
        "fe80::1%eth0", "[::1", "::1]", "[]", "",
        String(repeating: "a", count: 64) + ".com",
        String(repeating: "abcdefghi.", count: 26) + "com",
    ])
    func refused(_ raw: String) {
        #expect(HostName.parse(raw) == nil, "\(raw.debugDescription) must be refused")
    }

    @Test("names and literals are accepted in their canonical form", arguments: [
        ("Example.COM", HostName.name("example.com")),
        ("xn--exmple-cua.com", .name("xn--exmple-cua.com")),
        ("a-b.c1", .name("a-b.c1")),
        ("127.0.0.1", .ipv4("127.0.0.1")),
        ("[::1]", .ipv6("::1")),
        ("0:0:0:0:0:0:0:1", .ipv6("::1")),
    ])
    func accepted(_ raw: String, _ expected: HostName) {
        #expect(HostName.parse(raw) == expected)
    }

    @Test("CONNECT targets need a strict host and a numeric port", arguments: [
        ("example.com:443", "example.com", 443),
        ("[::1]:8080", "::1", 8080),
    ])
    func authority(_ raw: String, _ host: String, _ port: Int) {
        let parsed = HostName.parseAuthority(raw, defaultPort: nil)
        #expect(parsed?.host.text == host)
        #expect(parsed?.port == port)
    }

    @Test("bad CONNECT targets are refused", arguments: [
        "example.com", "example.com:0", "example.com:65536", "example.com:+80", "example.com: 80",
        "example.com:80\u{0}", "127.0.0.1\u{0}.example.com:443", "[::1]80", "::1:443x",
    ])
    func badAuthority(_ raw: String) {
        #expect(HostName.parseAuthority(raw, defaultPort: nil) == nil)
    }

    @Test("a lower level cannot widen a ceiling's hosts or ports", arguments: [
        ("api.example.com", "api.example.com:8080", false),   // no port in the ceiling means 80 and 443 only
        ("api.example.com", "api.example.com:443", true),
        ("api.example.com", "api.example.com", true),
        ("api.example.com:8080", "api.example.com", false),
        ("*.example.com", "a.example.com:22", false),
        ("*.example.com", "a.example.com", true),
        ("*.example.com", "example.com", false),
        ("*.example.com", "evil.com", false),
    ])
    func covers(_ ceiling: String, _ lower: String, _ covered: Bool) {
        #expect(HostPattern.covers(ceiling, lower) == covered)
    }

    @Test("uid ranges derived from state dirs are stable, in range and differ between gateways")
    func derivedUidBase() {
        let a = GatewayConfig.derivedUidBase(stateDir: "/srv/a/.skelm")
        let b = GatewayConfig.derivedUidBase(stateDir: "/srv/b/.skelm")
        #expect(a == GatewayConfig.derivedUidBase(stateDir: "/srv/a/.skelm"))
        #expect(a != b)
        for base in [a, b] {
            #expect(base >= 1_000_000_000)
            #expect(UInt64(base) + 50_000 <= 2_000_000_000)
            #expect((base - 1_000_000_000) % 50_000 == 0)
        }
    }
}
