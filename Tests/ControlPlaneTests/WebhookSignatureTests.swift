@testable import ControlPlane
import Foundation
import Testing

/// Webhook triggers' signature schemes, checked against the senders' own
/// published examples and, for skelm's scheme, against Python's hmac module.
@Suite("Webhook signatures")
struct WebhookSignatureTests {
    // docs.github.com, "Validating webhook deliveries".
    static let githubSecret = Array("It's a Secret to Everybody".utf8)
    static let githubBody = Array("Hello, World!".utf8)
    static let githubSignature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

    // api.slack.com, "Verifying requests from Slack".
    static let slackSecret = Array("8f742231b10e8888abcd99yyyzzz85a5".utf8)
    static let slackStamp = "1531420618"
    static let slackBody = Array(("token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
        + "&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
        + "&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
        + "%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        + "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c").utf8)
    static let slackSignature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    static let slackNow = Date(timeIntervalSince1970: 1531420618 + 60)

    static let secret = Array("a-trigger-secret-of-32-bytes-xyz".utf8)
    static let body = Array(#"{"order":42,"note":"ünïcode"}"#.utf8)
    static let now = Date(timeIntervalSince1970: 1_760_000_000)

    /// HMAC-SHA256 by Python's hmac module: an independent implementation.
    static func pythonHMAC(_ key: [UInt8], _ message: [UInt8]) throws -> String {
        let hex = { (b: [UInt8]) in b.map { String(format: "%02x", $0) }.joined() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c",
                             "import hmac,hashlib,sys; print(hmac.new(bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]), hashlib.sha256).hexdigest())",
                             hex(key), hex(message)]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func skelmHeader(_ t: Int64, body: [UInt8] = body, secret: [UInt8] = secret) throws -> String {
        "t=\(t),v1=" + (try pythonHMAC(secret, Array("\(t).".utf8) + body))
    }

    static let t = Int64(now.timeIntervalSince1970)

    // MARK: GitHub

    @Test("GitHub's published example verifies, whatever the header name's case")
    func githubVector() {
        for name in ["X-Hub-Signature-256", "x-hub-signature-256", "X-HUB-SIGNATURE-256"] {
            let verdict = WebhookSignature.github.verify(headers: [(name, Self.githubSignature)], body: Self.githubBody,
                                                         secret: Self.githubSecret, now: Date())
            #expect(verdict == .ok, "\(name)")
        }
    }

    @Test("GitHub: upper-case hex is the same signature")
    func githubUppercase() {
        let upper = "sha256=" + Self.githubSignature.dropFirst(7).uppercased()
        #expect(WebhookSignature.github.verify(headers: [("X-Hub-Signature-256", upper)], body: Self.githubBody,
                                               secret: Self.githubSecret, now: Date()) == .ok)
    }

    @Test("GitHub: a tampered body or another secret is a mismatch")
    func githubMismatch() {
        let tampered = Array("Hello, World?".utf8)
        #expect(WebhookSignature.github.verify(headers: [("X-Hub-Signature-256", Self.githubSignature)], body: tampered,
                                               secret: Self.githubSecret, now: Date())
            == .rejected(.signatureMismatch("X-Hub-Signature-256")))
        #expect(WebhookSignature.github.verify(headers: [("X-Hub-Signature-256", Self.githubSignature)], body: Self.githubBody,
                                               secret: Array("It's a Secret to Everybody!".utf8), now: Date())
            == .rejected(.signatureMismatch("X-Hub-Signature-256")))
    }

    @Test("GitHub: missing, duplicated and malformed headers are named", arguments: [
        [("X-Hub-Signature", "sha1=0123")],
        [("X-Hub-Signature-256", "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")],
        [("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1")],
        [("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1g")],
        [("X-Hub-Signature-256", "sha256=")],
        [("X-Hub-Signature-256", githubSignature), ("x-hub-signature-256", githubSignature)],
    ])
    func githubRefused(_ headers: [(String, String)]) {
        let verdict = WebhookSignature.github.verify(headers: headers.map { (name: $0.0, value: $0.1) }, body: Self.githubBody,
                                                     secret: Self.githubSecret, now: Date())
        switch verdict {
        case .rejected(.missingHeader("X-Hub-Signature-256")): #expect(headers.first?.0 == "X-Hub-Signature")
        case .rejected(.malformedHeader("X-Hub-Signature-256", _)): break
        default: Issue.record("\(headers): \(verdict)")
        }
    }

    // MARK: Slack

    @Test("Slack's published example verifies inside the window")
    func slackVector() {
        let verdict = WebhookSignature.slack().verify(
            headers: [("x-slack-signature", Self.slackSignature), ("X-Slack-Request-Timestamp", Self.slackStamp)],
            body: Self.slackBody, secret: Self.slackSecret, now: Self.slackNow)
        #expect(verdict == .ok)
    }

    @Test("Slack: stale and future timestamps say by how much", arguments: [
        (1531420618.0 + 301, Int64(301)), (1531420618.0 - 400, Int64(-400)),
    ])
    func slackWindow(_ now: Double, _ skew: Int64) {
        let verdict = WebhookSignature.slack().verify(
            headers: [("X-Slack-Signature", Self.slackSignature), ("X-Slack-Request-Timestamp", Self.slackStamp)],
            body: Self.slackBody, secret: Self.slackSecret, now: Date(timeIntervalSince1970: now))
        let expected = WebhookSignature.Failure.timestampOutsideWindow("X-Slack-Request-Timestamp", skew: skew, tolerance: 300)
        #expect(verdict == .rejected(expected))
        #expect(expected.description.contains("\(abs(skew)) s in the \(skew > 0 ? "past" : "future"), \(abs(skew) - 300) s outside"))
        // A wider window admits it.
        #expect(WebhookSignature.slack(tolerance: .seconds(500)).verify(
            headers: [("X-Slack-Signature", Self.slackSignature), ("X-Slack-Request-Timestamp", Self.slackStamp)],
            body: Self.slackBody, secret: Self.slackSecret, now: Date(timeIntervalSince1970: now)) == .ok)
    }

    @Test("Slack: tampered body, wrong secret, missing and malformed headers")
    func slackRefused() {
        func verify(_ headers: [(String, String)], body: [UInt8] = Self.slackBody, secret: [UInt8] = Self.slackSecret) -> WebhookSignature.Verdict {
            WebhookSignature.slack().verify(headers: headers.map { (name: $0.0, value: $0.1) }, body: body, secret: secret, now: Self.slackNow)
        }
        let good = [("X-Slack-Signature", Self.slackSignature), ("X-Slack-Request-Timestamp", Self.slackStamp)]
        #expect(verify(good, body: Self.slackBody + [0x20]) == .rejected(.signatureMismatch("X-Slack-Signature")))
        #expect(verify(good, secret: Self.secret) == .rejected(.signatureMismatch("X-Slack-Signature")))
        #expect(verify([good[0]]) == .rejected(.missingHeader("X-Slack-Request-Timestamp")))
        #expect(verify([good[1]]) == .rejected(.missingHeader("X-Slack-Signature")))
        #expect(verify([good[0], ("X-Slack-Request-Timestamp", "1531420618.5")])
            == .rejected(.malformedHeader("X-Slack-Request-Timestamp", "'1531420618.5' is not a Unix time in seconds")))
        #expect(verify([("X-Slack-Signature", "v1=" + Self.slackSignature.dropFirst(3)), good[1]])
            == .rejected(.malformedHeader("X-Slack-Signature", "does not start with v0= (the only version Slack signs with)")))
        // The signed timestamp is the header's text: another spelling of the same time does not verify.
        let padded = verify([good[0], ("X-Slack-Request-Timestamp", "01531420618")])
        #expect(padded == .rejected(.signatureMismatch("X-Slack-Signature")))
    }

    // MARK: skelm's own

    @Test("hmac: a signature made by Python's hmac verifies, and ours matches it")
    func hmacGood() throws {
        let header = try Self.skelmHeader(Self.t)
        #expect(WebhookSignature.hmac().verify(headers: [("x-skelm-signature", header)], body: Self.body,
                                               secret: Self.secret, now: Self.now) == .ok)
        #expect(WebhookSignature.skelmSignature(body: Self.body, secret: Self.secret, at: Self.now) == header)
    }

    @Test("hmac: any of several v1 values may match (secret rotation); unknown keys are ignored")
    func hmacRotation() throws {
        let other = try Self.pythonHMAC(Array("the-previous-secret-of-32-bytes!".utf8), Array("\(Self.t).".utf8) + Self.body)
        let good = try Self.skelmHeader(Self.t)
        for header in ["t=\(Self.t),v1=\(other),\(good.dropFirst("t=\(Self.t),".count))",
                       "\(good), v1=\(other)", "v0=abc, \(good) ,v2=future"] {
            #expect(WebhookSignature.hmac().verify(headers: [("X-Skelm-Signature", header)], body: Self.body,
                                                   secret: Self.secret, now: Self.now) == .ok, "\(header)")
        }
        #expect(WebhookSignature.hmac().verify(headers: [("X-Skelm-Signature", "t=\(Self.t),v1=\(other)")], body: Self.body,
                                               secret: Self.secret, now: Self.now)
            == .rejected(.signatureMismatch("X-Skelm-Signature")))
    }

    @Test("hmac: upper-case hex verifies; tampered body and wrong secret do not")
    func hmacVariants() throws {
        let header = try Self.skelmHeader(Self.t)
        let upper = "t=\(Self.t),v1=" + header.dropFirst("t=\(Self.t),v1=".count).uppercased()
        let scheme = WebhookSignature.hmac()
        #expect(scheme.verify(headers: [("X-Skelm-Signature", upper)], body: Self.body, secret: Self.secret, now: Self.now) == .ok)
        #expect(scheme.verify(headers: [("X-Skelm-Signature", header)], body: Self.body.dropLast(), secret: Self.secret, now: Self.now)
            == .rejected(.signatureMismatch("X-Skelm-Signature")))
        #expect(scheme.verify(headers: [("X-Skelm-Signature", header)], body: Self.body, secret: Self.githubSecret, now: Self.now)
            == .rejected(.signatureMismatch("X-Skelm-Signature")))
    }

    @Test("hmac: stale and future timestamps are outside the window; a forged one is a mismatch whatever its time")
    func hmacWindow() throws {
        let scheme = WebhookSignature.hmac(tolerance: .seconds(300))
        for (offset, inside) in [(-300, true), (300, true), (-301, false), (301, false), (-86_400, false)] {
            let t = Self.t + Int64(offset)
            let verdict = scheme.verify(headers: [("X-Skelm-Signature", try Self.skelmHeader(t))], body: Self.body,
                                        secret: Self.secret, now: Self.now)
            #expect(verdict == (inside ? .ok : .rejected(.timestampOutsideWindow("X-Skelm-Signature", skew: Int64(-offset), tolerance: 300))))
        }
        let forged = try Self.skelmHeader(Self.t - 1000, secret: Array("not-the-secret".utf8))
        #expect(scheme.verify(headers: [("X-Skelm-Signature", forged)], body: Self.body, secret: Self.secret, now: Self.now)
            == .rejected(.signatureMismatch("X-Skelm-Signature")))
    }

    @Test("hmac: missing and malformed headers", arguments: [
        ("", "missing"), ("v1=" + String(repeating: "0", count: 64), "no t="),
        ("t=1760000000", "no v1="), ("t=1760000000,t=1760000000,v1=" + String(repeating: "0", count: 64), "twice"),
        ("t=-5,v1=" + String(repeating: "0", count: 64), "Unix time"), ("t=now,v1=00", "Unix time"),
        ("t=1760000000,v1=abc", "64 hex"), ("t=1760000000,v1=" + String(repeating: "x", count: 64), "not hex"),
        ("t=1760000000,junk,v1=" + String(repeating: "0", count: 64), "key=value"),
        ("t=1760000000" + String(repeating: ",v1=" + String(repeating: "0", count: 64), count: 9), "more than 8"),
    ])
    func hmacMalformed(_ header: String, _ says: String) {
        let headers: [(name: String, value: String)] = header.isEmpty ? [("Content-Type", "application/json")] : [("X-Skelm-Signature", header)]
        let verdict = WebhookSignature.hmac().verify(headers: headers, body: Self.body, secret: Self.secret, now: Self.now)
        guard case .rejected(let failure) = verdict else {
            Issue.record("\(header) verified")
            return
        }
        if header.isEmpty {
            #expect(failure == .missingHeader("X-Skelm-Signature"))
        } else {
            guard case .malformedHeader("X-Skelm-Signature", let what) = failure else {
                Issue.record("\(failure)")
                return
            }
            #expect(what.contains(says), "\(what)")
        }
    }

    @Test("an empty secret refuses every delivery")
    func emptySecret() {
        #expect(WebhookSignature.github.verify(headers: [("X-Hub-Signature-256", Self.githubSignature)], body: Self.githubBody,
                                               secret: [], now: Date()) == .rejected(.emptySecret))
    }

    // MARK: Headers

    @Test("signature and credential headers are never forwarded into a run")
    func neverForwarded() {
        let required: Set = ["authorization", "cookie", "proxy-authorization", "x-hub-signature", "x-hub-signature-256",
                             "x-slack-signature", "x-skelm-signature", "x-api-key"]
        #expect(required.isSubset(of: WebhookSignature.neverForwarded))
        for scheme in [WebhookSignature.hmac(), .github, .slack()] {
            #expect(scheme.signatureHeaders.isSubset(of: WebhookSignature.neverForwarded))
            #expect(scheme.signatureHeaders.allSatisfy { $0 == $0.lowercased() })
            #expect(!scheme.forwards("Authorization"))
            #expect(scheme.forwards("Content-Type"))
        }
        #expect(!WebhookSignature.github.forwards("X-Hub-Signature-256"))
        #expect(WebhookSignature.github.forwards("X-GitHub-Delivery"))
        #expect(WebhookSignature.slack().forwards("X-Slack-Request-Timestamp"))
    }

    @Test("constant-time comparison is still a comparison")
    func constantTimeEqual() {
        #expect(WebhookSignature.constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!WebhookSignature.constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!WebhookSignature.constantTimeEqual([1, 2, 3], [1, 2]))
        #expect(WebhookSignature.constantTimeEqual([], []))
    }
}
