extension JSONSchema {
    /// The formats `format` asserts. Each reads the string's bytes: every format here
    /// is ASCII-only, so a non-ASCII digit (a Bengali four) is simply not a digit.
    enum Format: String, CaseIterable {
        case dateTime = "date-time", date, email, uri, uuid, ipv4, ipv6, hostname

        func accepts(_ s: String) -> Bool {
            let b = Array(s.utf8)
            switch self {
            case .dateTime: return FormatCheck.dateTime(b)
            case .date: return FormatCheck.fullDate(b[...])
            case .email: return FormatCheck.email(b)
            case .uri: return FormatCheck.uri(b)
            case .uuid: return FormatCheck.uuid(b)
            case .ipv4: return FormatCheck.ipv4(b[...])
            case .ipv6: return FormatCheck.ipv6(b[...])
            case .hostname: return Hostname.accepts(b[...])
            }
        }
    }
}

/// The grammars behind `JSONSchema.Format`: RFC 3339 dates and times, RFC 5321
/// mailboxes, RFC 3986 URIs, RFC 4122 UUIDs and RFC 4291 addresses.
enum FormatCheck {
    typealias Bytes = ArraySlice<UInt8>

    static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    static func isHex(_ c: UInt8) -> Bool { isDigit(c) || (c | 0x20 >= 0x61 && c | 0x20 <= 0x66) }
    static func isAlpha(_ c: UInt8) -> Bool { c | 0x20 >= 0x61 && c | 0x20 <= 0x7A }

    /// A run of exactly `b.count` ASCII digits, as a number.
    static func number(_ b: Bytes) -> Int? {
        guard !b.isEmpty, b.count <= 9, b.allSatisfy(isDigit) else { return nil }
        return b.reduce(0) { $0 * 10 + Int($1 - 0x30) }
    }

    // MARK: - RFC 3339

    static func daysIn(month m: Int, year y: Int) -> Int {
        switch m {
        case 2: (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// `full-date`: `YYYY-MM-DD`, a day that exists.
    static func fullDate(_ b: Bytes) -> Bool {
        let s = b.startIndex
        guard b.count == 10, b[s + 4] == 0x2D, b[s + 7] == 0x2D,
              let y = number(b[s..<s + 4]), let m = number(b[s + 5..<s + 7]), let d = number(b[s + 8..<s + 10]),
              (1...12).contains(m) else { return false }
        return d >= 1 && d <= daysIn(month: m, year: y)
    }

    /// `date-time`: a full date, `T`, `HH:MM:SS`, an optional fraction and `Z` or
    /// an offset. A leap second is only 23:59:60 in UTC, once the offset is applied.
    static func dateTime(_ b: [UInt8]) -> Bool {
        guard b.count >= 20, fullDate(b[0..<10]), b[10] | 0x20 == 0x74 else { return false }
        guard b[13] == 0x3A, b[16] == 0x3A, let h = number(b[11..<13]), let m = number(b[14..<16]),
              let sec = number(b[17..<19]), h <= 23, m <= 59, sec <= 60 else { return false }
        var i = 19
        if b[i] == 0x2E {
            i += 1
            let start = i
            while i < b.count, isDigit(b[i]) { i += 1 }
            guard i > start, i < b.count else { return false }
        }
        var offset = 0
        if b[i] | 0x20 == 0x7A {
            guard i + 1 == b.count else { return false }
        } else {
            guard b[i] == 0x2B || b[i] == 0x2D, i + 6 == b.count, b[i + 3] == 0x3A,
                  let oh = number(b[i + 1..<i + 3]), let om = number(b[i + 4..<i + 6]), oh <= 23, om <= 59 else { return false }
            offset = (oh * 60 + om) * (b[i] == 0x2B ? 1 : -1)
        }
        if sec == 60 {
            let utc = ((h * 60 + m - offset) % 1440 + 1440) % 1440
            return utc == 23 * 60 + 59
        }
        return true
    }

    // MARK: - Addresses

    static func uuid(_ b: [UInt8]) -> Bool {
        guard b.count == 36 else { return false }
        for (i, c) in b.enumerated() {
            if [8, 13, 18, 23].contains(i) ? c != 0x2D : !isHex(c) { return false }
        }
        return true
    }

    /// Dotted decimal, four parts, no leading zeros (which some parsers read as octal).
    static func ipv4(_ b: Bytes) -> Bool {
        let parts = b.split(separator: 0x2E, omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { p in
            guard p.count <= 3, let n = number(p), n <= 255 else { return false }
            return p.count == 1 || p.first != 0x30
        }
    }

    /// Eight groups of up to four hex digits, one `::` standing for a run of zero
    /// groups, and optionally the last two groups written as an IPv4 address.
    static func ipv6(_ b: Bytes) -> Bool {
        var head = b, groups = 8
        if b.contains(0x2E) {
            guard let colon = b.lastIndex(of: 0x3A), ipv4(b[(colon + 1)...]) else { return false }
            head = b[...colon]
            if !head.suffix(2).elementsEqual([0x3A, 0x3A]) { head = head.dropLast() }
            groups = 6
        }
        func hexGroups(_ s: Bytes) -> Int? {
            if s.isEmpty { return 0 }
            let parts = s.split(separator: 0x3A, omittingEmptySubsequences: false)
            guard parts.allSatisfy({ (1...4).contains($0.count) && $0.allSatisfy(isHex) }) else { return nil }
            return parts.count
        }
        guard let gap = head.firstRange(of: [0x3A, 0x3A]) else { return hexGroups(head) == groups }
        let right = head[gap.upperBound...]
        guard right.firstRange(of: [0x3A, 0x3A]) == nil,
              let l = hexGroups(head[..<gap.lowerBound]), let r = hexGroups(right) else { return false }
        return l + r < groups
    }

    // MARK: - RFC 5321 mailbox

    static let atext = Set("!#$%&'*+-/=?^_`{|}~".utf8)

    /// `local@domain`: the local part a dot-atom or a quoted string, the domain a
    /// host name or an address literal (`[127.0.0.1]`, `[IPv6:::1]`).
    static func email(_ b: [UInt8]) -> Bool {
        var at: Int
        if b.first == 0x22 {
            var i = 1
            while i < b.count, b[i] != 0x22 {
                guard b[i] >= 0x20, b[i] <= 0x7E else { return false }
                i += b[i] == 0x5C ? 2 : 1
            }
            guard i < b.count, i + 1 < b.count, b[i + 1] == 0x40 else { return false }
            at = i + 1
        } else {
            guard let i = b.firstIndex(of: 0x40) else { return false }
            at = i
            let local = b[..<at]
            let atoms = local.split(separator: 0x2E, omittingEmptySubsequences: false)
            guard atoms.allSatisfy({ !$0.isEmpty && $0.allSatisfy { isAlpha($0) || isDigit($0) || atext.contains($0) } }) else { return false }
        }
        guard at >= 1, at <= 64 else { return false }
        let domain = b[(at + 1)...]
        if domain.first == 0x5B {
            guard domain.last == 0x5D, domain.count >= 2 else { return false }
            let inner = domain.dropFirst().dropLast()
            if inner.starts(with: Array("IPv6:".utf8)) { return ipv6(inner.dropFirst(5)) }
            return ipv4(inner)
        }
        return Hostname.accepts(domain)
    }

    // MARK: - RFC 3986 URI

    static let unreserved = Set("-._~".utf8)
    static let subDelims = Set("!$&'()*+,;=".utf8)

    /// Characters allowed as they are, plus percent-escapes.
    static func encoded(_ b: Bytes, allowing extra: Set<UInt8>) -> Bool {
        var i = b.startIndex
        while i < b.endIndex {
            let c = b[i]
            if c == 0x25 {
                guard i + 2 < b.endIndex, isHex(b[i + 1]), isHex(b[i + 2]) else { return false }
                i += 3
                continue
            }
            guard isAlpha(c) || isDigit(c) || unreserved.contains(c) || subDelims.contains(c) || extra.contains(c) else { return false }
            i += 1
        }
        return true
    }

    /// An absolute URI: a scheme, then an optional `//authority`, a path, a query
    /// and a fragment. Relative references are not URIs.
    static func uri(_ b: [UInt8]) -> Bool {
        guard let colon = b.firstIndex(of: 0x3A), colon > 0, isAlpha(b[0]),
              b[1..<colon].allSatisfy({ isAlpha($0) || isDigit($0) || $0 == 0x2B || $0 == 0x2D || $0 == 0x2E }) else { return false }
        var rest = b[(colon + 1)...]
        if let hash = rest.firstIndex(of: 0x23) {
            guard encoded(rest[(hash + 1)...], allowing: Set(":@/?".utf8)) else { return false }
            rest = rest[..<hash]
        }
        if let question = rest.firstIndex(of: 0x3F) {
            guard encoded(rest[(question + 1)...], allowing: Set(":@/?".utf8)) else { return false }
            rest = rest[..<question]
        }
        if rest.starts(with: [0x2F, 0x2F]) {
            let afterSlashes = rest.dropFirst(2)
            let end = afterSlashes.firstIndex(of: 0x2F) ?? afterSlashes.endIndex
            guard authority(afterSlashes[..<end]) else { return false }
            rest = afterSlashes[end...]
        }
        return encoded(rest, allowing: Set(":@/".utf8))
    }

    /// `[userinfo@]host[:port]`, the host a bracketed IPv6 address or a reg-name
    /// (which a dotted quad also is, even out of range).
    static func authority(_ b: Bytes) -> Bool {
        var host = b
        if let at = b.lastIndex(of: 0x40) {
            guard encoded(b[..<at], allowing: [0x3A]) else { return false }
            host = b[(at + 1)...]
        }
        var port: Bytes = []
        if host.first == 0x5B {
            guard let close = host.firstIndex(of: 0x5D) else { return false }
            let literal = host[(host.startIndex + 1)..<close]
            let future = literal.first.map { $0 | 0x20 == 0x76 } ?? false
            guard future ? encoded(literal, allowing: [0x3A]) : ipv6(literal) else { return false }
            port = host[(close + 1)...]
            guard port.isEmpty || port.first == 0x3A else { return false }
            port = port.dropFirst()
        } else {
            if let colon = host.firstIndex(of: 0x3A) {
                port = host[(colon + 1)...]
                host = host[..<colon]
            }
            guard encoded(host, allowing: []) else { return false }
        }
        return port.allSatisfy(isDigit)
    }
}
