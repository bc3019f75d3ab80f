/// Why an `every`, `jitter`, `at` or `tz` value was refused; the message names
/// the value and says what would be accepted, for whoever wrote the trigger.
public struct TimeSpecError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}
