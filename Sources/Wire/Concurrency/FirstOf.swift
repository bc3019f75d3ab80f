/// Whichever of several racers answers first. Unlike a task group, it does not
/// wait for the losers: a call blocked on a peer that stopped answering does
/// not observe cancellation, and the race must end without it. Losers are
/// cancelled and their answers dropped.
public enum FirstOf {
    public static func race<T: Sendable>(_ racers: [@Sendable () async -> T]) async -> T {
        let pending = Shared<CheckedContinuation<T, Never>?>(nil)
        let tasks = Shared<[Task<Void, Never>]>([])
        return await withCheckedContinuation { (cont: CheckedContinuation<T, Never>) in
            pending.set(cont)
            for racer in racers {
                let task = Task {
                    let value = await racer()
                    guard let winner = pending.update({ c -> CheckedContinuation<T, Never>? in defer { c = nil }; return c }) else { return }
                    winner.resume(returning: value)
                    for t in tasks.get { t.cancel() }
                }
                tasks.update { $0.append(task) }
            }
            // A racer may have won before the others were listed.
            if pending.update({ $0 == nil }) { for t in tasks.get { t.cancel() } }
        }
    }

    /// `body`'s answer, or nil once `limit` has passed without one.
    public static func within<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async -> T) async -> T? {
        await race([{ await body() }, {
            try? await Task.sleep(for: limit)
            return nil
        }])
    }
}
