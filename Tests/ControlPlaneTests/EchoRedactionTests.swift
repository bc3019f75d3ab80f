@testable import ControlPlane
import Foundation
import Testing

/// What the control plane hands a worker back from a request it added a
/// credential to: every form of the value the origin may echo is gone.
@Suite("Echoed credentials are redacted")
struct EchoRedactionTests {
    @Test("the header's value, the bare secret and its base64 form are each redacted, wherever they stand")
    func forms() {
        let secret = "s3cr3t-value-91f"
        let values = ["Bearer \(secret)", secret, Data(secret.utf8).base64EncodedString()]
        let body = #"{"auth": "Bearer \#(secret)", "error": "bad token \#(secret)", "basic": "\#(Data(secret.utf8).base64EncodedString())"}"#
        let out = String(decoding: EchoRedaction.redact(Array(body.utf8), values: values), as: UTF8.self)
        #expect(!out.contains(secret))
        #expect(!out.contains(Data(secret.utf8).base64EncodedString()))
        #expect(out.components(separatedBy: "[REDACTED]").count == 4, "\(out)")
        // Values too short to search for without redacting ordinary text are left alone.
        #expect(EchoRedaction.redact(Array("abc abc".utf8), values: ["abc"]) == Array("abc abc".utf8))
    }
}
