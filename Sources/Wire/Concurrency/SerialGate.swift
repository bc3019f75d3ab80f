/// Runs one async body at a time, in arrival order. An actor alone would not
/// do: its methods interleave at every await (a reload awaits a lot; so does
/// an agent's question to a person).
public actor SerialGate {
    public init() {}

    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    public func run<T: Sendable>(_ body: @Sendable () async -> T) async -> T {
        if busy { await withCheckedContinuation { waiting.append($0) } }
        busy = true
        defer {
            if waiting.isEmpty { busy = false } else { waiting.removeFirst().resume() }
        }
        return await body()
    }
}
