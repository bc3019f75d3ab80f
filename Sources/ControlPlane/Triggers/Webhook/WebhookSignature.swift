import Crypto
import Foundation

/// How a webhook trigger checks that a delivery comes from whoever holds its
/// secret: HMAC-SHA256 over the raw body, as the sender signed it.
///
/// Checks run in this order: the headers are there and well formed, then the
/// signature, then the timestamp. The timestamp is signed, so a delivery
/// outside the window with a good signature was really sent by someone with
/// the secret: a replay, or a clock that is off. A forged one is reported as a
/// mismatch whatever its timestamp, so a stale-timestamp report never sends an
/// operator chasing clocks for what was never a real delivery.
///
/// Signatures are compared in constant time. The reasons in `Failure` are for
/// the operator (the audit log); a sender is told no more than 401.
enum WebhookSignature: Sendable, Hashable {
    /// skelm's own, laid out as Stripe's:
    /// `X-Skelm-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
    /// Several `v1=` may be sent (one per secret, while a secret is rotated): any
    /// may match. Keys other than `t` and `v1` are ignored, for later versions.
    case hmac(tolerance: Duration = .seconds(300))
    /// GitHub's: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    /// Nothing in it is dated: replays are caught by the delivery id
    /// (`X-GitHub-Delivery`), deduplicated elsewhere.
    case github
    /// Slack's: `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<ts>:<body>">`,
    /// `<ts>` being `X-Slack-Request-Timestamp`.
    case slack(tolerance: Duration = .seconds(300))

    enum Verdict: Sendable, Equatable {
        case ok
        case rejected(Failure)
    }

    /// The headers that carry this scheme's signature (lower-cased): a run's
    /// input never holds them, or a step could replay the delivery elsewhere.
    var signatureHeaders: Set<String> {
        switch self {
        case .hmac: ["x-skelm-signature"]
        case .github: ["x-hub-signature-256", "x-hub-signature"]
        case .slack: ["x-slack-signature"]
        }
    }

    /// Headers no run's input ever holds, whatever the scheme (lower-cased):
    /// credentials, and every signature a known sender puts on its requests.
    static let neverForwarded: Set<String> = [
        // Credentials of the caller.
        "authorization", "proxy-authorization", "cookie", "x-api-key", "x-auth-token",
        "x-access-token", "x-amz-security-token",
        // GitLab sends its webhook secret itself, not a signature of the body.
        "x-gitlab-token",
        // Signatures: replayable for as long as their window lasts.
        "x-hub-signature", "x-hub-signature-256", "x-slack-signature", "x-skelm-signature",
        "stripe-signature", "x-shopify-hmac-sha256", "x-twilio-signature",
        "x-signature", "webhook-signature",
    ]

    /// Whether a header may be copied into a run's input.
    func forwards(_ name: String) -> Bool {
        let name = name.lowercased()
        return !Self.neverForwarded.contains(name) && !signatureHeaders.contains(name)
    }

    /// Checks a delivery. `headers`' names are compared without case.
    func verify(headers: [(name: String, value: String)], body: some DataProtocol,
                secret: [UInt8], now: Date) -> Verdict {
        verify(body: body, secret: secret, now: now) { name in
            headers.filter { $0.name.lowercased() == name }.map(\.value)
        }
    }

    /// Checks a delivery; `values` gives every value of a header, asked for by
    /// its lower-cased name (`request.headers[values: name]` in Hummingbird).
    func verify(body: some DataProtocol, secret: [UInt8], now: Date,
                values: (String) -> [String]) -> Verdict {
        do throws(Failure) {
            guard !secret.isEmpty else { throw Failure.emptySecret }
            switch self {
            case .hmac(let tolerance):
                let header = "X-Skelm-Signature"
                let (timestamp, candidates) = try Self.parseSkelm(Self.single(header, values))
                let expected = Self.mac(secret, Array("\(timestamp).".utf8), body)
                try Self.match(expected, candidates, header: header)
                try Self.check(timestamp, header: header, now: now, tolerance: tolerance)
            case .github:
                let header = "X-Hub-Signature-256"
                let value = try Self.single(header, values)
                guard value.hasPrefix("sha256=") else {
                    throw Failure.malformedHeader(header, "does not start with sha256=")
                }
                let candidate = try Self.hex(value.dropFirst(7), header: header)
                try Self.match(Self.mac(secret, [], body), [candidate], header: header)
            case .slack(let tolerance):
                let header = "X-Slack-Signature"
                let stampHeader = "X-Slack-Request-Timestamp"
                let value = try Self.single(header, values)
                let stamp = try Self.single(stampHeader, values)
                let timestamp = try Self.unixTime(stamp, header: stampHeader)
                guard value.hasPrefix("v0=") else {
                    throw Failure.malformedHeader(header, "does not start with v0= (the only version Slack signs with)")
                }
                let candidate = try Self.hex(value.dropFirst(3), header: header)
                try Self.match(Self.mac(secret, Array("v0:\(stamp):".utf8), body), [candidate], header: header)
                try Self.check(timestamp, header: stampHeader, now: now, tolerance: tolerance)
            }
            return .ok
        } catch {
            return .rejected(error)
        }
    }

    /// An `X-Skelm-Signature` value for `body`, signed at `date`: what a
    /// sender (the CLI, a test) puts on a delivery.
    static func skelmSignature(body: some DataProtocol, secret: [UInt8], at date: Date) -> String {
        let t = Int64(date.timeIntervalSince1970.rounded(.down))
        let mac = mac(secret, Array("\(t).".utf8), body)
        return "t=\(t),v1=" + mac.map { String(format: "%02x", $0) }.joined()
    }

    /// At most this many `v1=` values are looked at: two while a secret is
    /// rotated, more is not a sender of ours.
    static let maxSignatures = 8

    // MARK: - Parts

    private static func mac(_ secret: [UInt8], _ prefix: [UInt8], _ body: some DataProtocol) -> [UInt8] {
        var hmac = HMAC<SHA256>(key: SymmetricKey(data: secret))
        hmac.update(data: prefix)
        hmac.update(data: body)
        return Array(hmac.finalize())
    }

    /// The one value of a header: one sent twice is refused, since a proxy
    /// and this check could each pick a different one.
    private static func single(_ header: String, _ values: (String) -> [String]) throws(Failure) -> String {
        let found = values(header.lowercased())
        guard let value = found.first else { throw .missingHeader(header) }
        guard found.count == 1 else { throw .malformedHeader(header, "sent \(found.count) times; a delivery carries one") }
        return value.trimmingCharacters(in: .whitespaces)
    }

    private static func parseSkelm(_ value: String) throws(Failure) -> (timestamp: Int64, signatures: [[UInt8]]) {
        let header = "X-Skelm-Signature"
        var timestamp: Int64?
        var signatures: [[UInt8]] = []
        for item in value.split(separator: ",", omittingEmptySubsequences: false) {
            let item = item.trimmingCharacters(in: .whitespaces)
            guard let eq = item.firstIndex(of: "=") else {
                throw .malformedHeader(header, "'\(item.prefix(20))' is not key=value")
            }
            let key = item[..<eq], val = item[item.index(after: eq)...]
            switch key {
            case "t":
                guard timestamp == nil else { throw .malformedHeader(header, "t= is given twice") }
                timestamp = try unixTime(String(val), header: header)
            case "v1":
                guard signatures.count < maxSignatures else {
                    throw .malformedHeader(header, "more than \(maxSignatures) v1= signatures")
                }
                signatures.append(try hex(val, header: header))
            default:
                continue
            }
        }
        guard let timestamp else { throw .malformedHeader(header, "no t=<unix seconds>") }
        guard !signatures.isEmpty else { throw .malformedHeader(header, "no v1=<signature>") }
        return (timestamp, signatures)
    }

    /// Whole seconds since 1970, digits only (no sign, no fraction).
    private static func unixTime(_ text: String, header: String) throws(Failure) -> Int64 {
        guard (1...12).contains(text.utf8.count), text.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
              let seconds = Int64(text) else {
            throw .malformedHeader(header, "'\(text.prefix(20))' is not a Unix time in seconds")
        }
        return seconds
    }

    /// A SHA-256 HMAC written as 64 hex digits, either case.
    private static func hex(_ text: some StringProtocol, header: String) throws(Failure) -> [UInt8] {
        let digits = Array(text.utf8)
        guard digits.count == 2 * SHA256.byteCount else {
            throw .malformedHeader(header, "the signature has \(digits.count) characters, not \(2 * SHA256.byteCount) hex digits")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(SHA256.byteCount)
        for i in stride(from: 0, to: digits.count, by: 2) {
            guard let high = nibble(digits[i]), let low = nibble(digits[i + 1]) else {
                throw .malformedHeader(header, "the signature is not hex")
            }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x41...0x46: c - 0x41 + 10
        case 0x61...0x66: c - 0x61 + 10
        default: nil
        }
    }

    /// Every candidate is compared in full, each in constant time.
    private static func match(_ expected: [UInt8], _ candidates: [[UInt8]], header: String) throws(Failure) {
        var matched = false
        for candidate in candidates where constantTimeEqual(expected, candidate) { matched = true }
        guard matched else { throw .signatureMismatch(header) }
    }

    /// Time independent of where `a` and `b` differ (their lengths are public:
    /// always a SHA-256's).
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }

    private static func check(_ timestamp: Int64, header: String, now: Date, tolerance: Duration) throws(Failure) {
        let skew = now.timeIntervalSince1970 - Double(timestamp)
        let window = Double(tolerance.components.seconds) + Double(tolerance.components.attoseconds) / 1e18
        guard abs(skew) <= window else {
            throw .timestampOutsideWindow(header, skew: Int64(skew.rounded()), tolerance: Int64(window.rounded()))
        }
    }
}
