import Foundation

/// A regular expression whose matching stops at a deadline. Schema `pattern`s are
/// written by workflow authors and matched against strings clients send, and a
/// backtracking engine can take exponential time on both together
/// (`^(a+)+$` against `aaaa…a!`): without a limit one request pins a core for minutes.
///
/// The engine is ICU's, underneath `NSRegularExpression`. Asking for progress
/// reports makes CoreFoundation install ICU's match callback (`uregex_setMatchCallback`,
/// called periodically while one match attempt runs long) and its find-progress
/// callback (at each new start position); stopping from the block aborts the
/// match inside ICU. This is the engine's own interrupt, reached
/// without linking ICU's C API directly, which a dynamically linked build
/// cannot do without an extra linker flag.
public struct BoundedRegex: Sendable {
    public enum Outcome: Sendable, Equatable {
        case match
        case noMatch
        /// The deadline passed first: neither a match nor a non-match.
        case timedOut
        /// The engine gave up (its backtracking stack is bounded too).
        case failed
    }

    public let pattern: String
    private let regex: NSRegularExpression

    /// Nil when the pattern is not a valid regular expression.
    public init?(_ pattern: String) {
        guard let regex = try? NSRegularExpression(pattern: pattern) else { return nil }
        self.pattern = pattern
        self.regex = regex
    }

    /// Whether the pattern matches anywhere in `text` (JSON Schema patterns are not anchored).
    public func firstMatch(in text: String, before deadline: ContinuousClock.Instant) -> Outcome {
        guard ContinuousClock.now < deadline else { return .timedOut }
        var outcome = Outcome.noMatch
        regex.enumerateMatches(in: text, options: [.reportProgress, .reportCompletion],
                               range: NSRange(text.startIndex..., in: text)) { match, flags, stop in
            if match != nil {
                outcome = .match
                stop.pointee = true
            } else if flags.contains(.internalError) {
                outcome = .failed
            } else if flags.contains(.progress), ContinuousClock.now >= deadline {
                outcome = .timedOut
                stop.pointee = true
            }
        }
        return outcome
    }
}
