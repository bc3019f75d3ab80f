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

    /// Whether the pattern matches anywhere in `text` (JSON Schema patterns are
    /// not anchored), stopping once this thread's CPU time reaches `cpuDeadline`
    /// (a `ThreadCPUTime` reading).
    public func firstMatch(in text: String, cpuDeadline: Duration) -> Outcome {
        firstMatch(in: text) { ThreadCPUTime.now() >= cpuDeadline }
    }

    /// The same, against the wall clock.
    public func firstMatch(in text: String, before deadline: ContinuousClock.Instant) -> Outcome {
        firstMatch(in: text) { ContinuousClock.now >= deadline }
    }

    private func firstMatch(in text: String, expired: () -> Bool) -> Outcome {
        guard !expired() else { return .timedOut }
        var outcome = Outcome.noMatch
        // Progress comes at every start position: reading a clock each time
        // (CPU time is a system call) would cost more than the match.
        var reports = 0
        // The block runs only during this call (enumerateMatches is synchronous).
        withoutActuallyEscaping(expired) { expired in
            regex.enumerateMatches(in: text, options: [.reportProgress, .reportCompletion],
                                   range: NSRange(text.startIndex..., in: text)) { match, flags, stop in
                if match != nil {
                    outcome = .match
                    stop.pointee = true
                } else if flags.contains(.internalError) {
                    outcome = .failed
                } else if flags.contains(.progress) {
                    reports += 1
                    guard reports & 63 == 0, expired() else { return }
                    outcome = .timedOut
                    stop.pointee = true
                }
            }
        }
        return outcome
    }
}
