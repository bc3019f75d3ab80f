import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Addresses a step may reach only when config names the address itself:
/// loopback, private ranges, link-local (cloud metadata at 169.254.169.254
/// lives there), carrier-grade NAT, unspecified, multicast and their IPv6
/// counterparts (including IPv4-mapped forms).
enum AddressClass {
    static func isSpecial(_ ip: String) -> Bool {
        var v4 = in_addr()
        if inet_pton(AF_INET, ip, &v4) == 1 {
            return isSpecialV4(withUnsafeBytes(of: &v4) { Array($0) })
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, ip, &v6) == 1 else { return true }   // unparsable: refuse
        let b = withUnsafeBytes(of: &v6) { Array($0) }
        if b[0..<10].allSatisfy({ $0 == 0 }), b[10] == 0xff, b[11] == 0xff { return isSpecialV4(Array(b[12..<16])) }   // ::ffff:a.b.c.d
        if b[0..<12].allSatisfy({ $0 == 0 }) { return true }   // ::, ::1, deprecated ::a.b.c.d
        if b[0] & 0xfe == 0xfc { return true }                 // fc00::/7 unique local (fd00::/8 among them)
        if b[0] == 0xfe, b[1] & 0xc0 == 0x80 { return true }   // fe80::/10 link-local
        if b[0] == 0xfe, b[1] & 0xc0 == 0xc0 { return true }   // fec0::/10 site-local
        if b[0] == 0xff { return true }                        // multicast
        if b[0] == 0x20, b[1] == 0x01, b[2] == 0x0d, b[3] == 0xb8 { return true }   // 2001:db8::/32 documentation
        if b[0] == 0x00, b[1] == 0x64, b[2] == 0xff, b[3] == 0x9b { return isSpecialV4(Array(b[12..<16])) }   // 64:ff9b::/96 NAT64
        return false
    }

    static func isSpecialV4(_ a: [UInt8]) -> Bool {
        switch (a[0], a[1]) {
        case (0, _), (10, _), (127, _): return true
        case (169, 254): return true
        case (172, 16...31): return true
        case (192, 168): return true
        case (100, 64...127): return true
        case (192, 0) where a[2] == 0 || a[2] == 2: return true
        case (198, 18...19): return true
        case (224...255, _): return true
        default: return false
        }
    }

    /// An address of this host: loopback, unspecified (which connects to the
    /// host itself), or one of its interfaces' addresses.
    static func isLocal(_ ip: String) -> Bool {
        var v4 = in_addr()
        if inet_pton(AF_INET, ip, &v4) == 1 {
            let a = withUnsafeBytes(of: &v4) { Array($0) }
            if a[0] == 127 || a.allSatisfy({ $0 == 0 }) { return true }
        } else {
            var v6 = in6_addr()
            guard inet_pton(AF_INET6, ip, &v6) == 1 else { return true }
            let b = withUnsafeBytes(of: &v6) { Array($0) }
            if b[0..<15].allSatisfy({ $0 == 0 }), b[15] <= 1 { return true }   // :: and ::1
            if b[0..<10].allSatisfy({ $0 == 0 }), b[10] == 0xff, b[11] == 0xff {
                return isLocal("\(b[12]).\(b[13]).\(b[14]).\(b[15])")
            }
        }
        return interfaceAddresses().contains(ip)
    }

    /// Every address configured on this host's interfaces, as numeric text.
    static func interfaceAddresses() -> Set<String> {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return [] }
        defer { freeifaddrs(first) }
        var out: Set<String> = []
        var p: UnsafeMutablePointer<ifaddrs>? = first
        while let ifa = p {
            if let addr = ifa.pointee.ifa_addr, addr.pointee.sa_family == AF_INET || addr.pointee.sa_family == AF_INET6 {
                let len = socklen_t(addr.pointee.sa_family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size)
                var buf = [CChar](repeating: 0, count: Int(NI_MAXHOST))
                if getnameinfo(addr, len, &buf, socklen_t(buf.count), nil, 0, NI_NUMERICHOST) == 0 {
                    var text = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                    if let zone = text.firstIndex(of: "%") { text = String(text[..<zone]) }
                    out.insert(text)
                }
            }
            p = ifa.pointee.ifa_next
        }
        return out
    }

    /// Every address `host` resolves to (one for a literal).
    static func resolve(_ host: String, port: Int) -> [(ip: String, sockaddr: Data)] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &res) == 0, let first = res else { return [] }
        defer { freeaddrinfo(first) }
        var out: [(String, Data)] = []
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let ai = p {
            var buf = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(ai.pointee.ai_addr, ai.pointee.ai_addrlen, &buf, socklen_t(buf.count), nil, 0, NI_NUMERICHOST) == 0 {
                let ip = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if !out.contains(where: { $0.0 == ip }) {
                    out.append((ip, Data(bytes: ai.pointee.ai_addr, count: Int(ai.pointee.ai_addrlen))))
                }
            }
            p = ai.pointee.ai_next
        }
        return out
    }
}
