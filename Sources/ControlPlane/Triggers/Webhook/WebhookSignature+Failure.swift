extension WebhookSignature {
    /// Why a delivery was refused, worded for the operator who must fix it.
    enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        /// The trigger has no secret: an empty HMAC key anyone can sign with.
        case emptySecret
        case missingHeader(String)
        /// The header, and what is wrong with it.
        case malformedHeader(String, String)
        /// The timestamp header; `skew` is how many seconds the timestamp lies
        /// before now (negative: after), `tolerance` the window either way.
        case timestampOutsideWindow(String, skew: Int64, tolerance: Int64)
        case signatureMismatch(String)

        var description: String {
            switch self {
            case .emptySecret:
                "the trigger's secret is empty: every delivery is refused until one is set"
            case .missingHeader(let header):
                "no \(header) header: the sender does not sign its deliveries, or signs them for another scheme"
            case .malformedHeader(let header, let what):
                "\(header) is malformed: \(what)"
            case .timestampOutsideWindow(let header, let skew, let tolerance):
                "\(header) is \(abs(skew)) s in the \(skew >= 0 ? "past" : "future"), "
                    + "\(abs(skew) - tolerance) s outside the ±\(tolerance) s window: "
                    + "a replayed delivery, or the sender's or the gateway's clock is off"
            case .signatureMismatch(let header):
                "\(header) does not match the body: the trigger's secret is not the sender's, "
                    + "or the body was changed on the way (a proxy re-encoding it)"
            }
        }
    }
}
