import Synchronization

/// A value several tasks and threads of one step read and set: the session's
/// id, whether the step's time ran out, the first line a peer garbled.
final class Shared<Value: Sendable>: Sendable {
    private let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
    var get: Value { value.withLock { $0 } }
    func set(_ new: Value) { value.withLock { $0 = new } }
}
