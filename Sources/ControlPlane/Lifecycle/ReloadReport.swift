import Foundation

/// What a reload (SIGHUP, `POST /gateway/reload`, an edited file) or a
/// `PATCH /v1/config` did: the answer to the caller, and what the log says.
public struct ReloadReport: Encodable, Sendable {
    public enum Outcome: String, Encodable, Sendable {
        /// Something changed and every change that can apply live did.
        case applied
        /// The config is the same as the running one; workflows were read again.
        case unchanged
        /// The new config does not validate (or a secret it names is missing):
        /// nothing changed, the running config stays.
        case rejected
    }

    public enum Trigger: String, Encodable, Sendable {
        case signal, api, fileChange, patch
    }

    public var outcome: Outcome
    public var trigger: Trigger
    /// Keys whose new value is in effect now.
    var applied: [ConfigDiff.Change] = []
    /// Keys whose new value waits for a restart; the running value is kept.
    var restartRequired: [ConfigDiff.Change] = []
    public var error: String?
    public var workflows: Workflows?

    public struct Workflows: Encodable, Sendable {
        public var valid: Int
        public var invalid: Int
    }

    init(outcome: Outcome, trigger: Trigger) {
        self.outcome = outcome
        self.trigger = trigger
    }

    /// One line for the log and the CLI.
    public var summary: String {
        switch outcome {
        case .rejected: return "rejected, running config kept: \(error ?? "")"
        case .unchanged: return "config unchanged" + (workflows.map { "; workflows: \($0.valid) valid, \($0.invalid) invalid" } ?? "")
        case .applied:
            var s = "applied: " + (applied.isEmpty ? "nothing" : applied.map(\.key).joined(separator: ", "))
            if !restartRequired.isEmpty { s += "; needs a restart: " + restartRequired.map(\.key).joined(separator: ", ") }
            return s
        }
    }
}
