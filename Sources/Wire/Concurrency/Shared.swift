import Synchronization

/// A value several tasks and threads read and set: a session's id, whether a
/// step's time ran out, whether a turn is still its step's.
public final class Shared<Value: Sendable>: Sendable {
    private let value: Mutex<Value>
    public init(_ value: Value) { self.value = Mutex(value) }
    public var get: Value { value.withLock { $0 } }
    public func set(_ new: Value) { value.withLock { $0 = new } }
    /// Reads and changes it in one step (a counter two tasks move).
    @discardableResult
    public func update<R: Sendable>(_ body: (inout Value) -> R) -> R { value.withLock { body(&$0) } }
}
