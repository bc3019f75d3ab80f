/// Why a cron expression was refused. The message names the field and the
/// offending text ("minute: 75 is out of range 0-59"), because it is shown to
/// whoever wrote the workflow file, next to the trigger that holds it.
public struct CronError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}
