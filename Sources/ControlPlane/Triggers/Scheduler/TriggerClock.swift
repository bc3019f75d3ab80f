import Foundation
import Synchronization

/// The scheduler's "now". Normally the system clock. With
/// `SKELM_SCHEDULER_CLOCK_FILE` set, the time is read from that file (Unix
/// seconds), so a test can move a gateway across cron slots and DST changes
/// without waiting for them; only the scheduler reads it.
struct TriggerClock: Sendable {
    let file: String?

    init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        file = environment["SKELM_SCHEDULER_CLOCK_FILE"].flatMap { $0.isEmpty ? nil : $0 }
    }

    func now() -> Date {
        if let file, let text = try? String(contentsOfFile: file, encoding: .utf8),
           let t = Double(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            return Date(timeIntervalSince1970: t)
        }
        return Date()
    }

    /// The longest the scheduler sleeps between looks at the time: a clock
    /// file can jump at any moment; the system clock can be set or the host suspended.
    var maxSleep: Duration { file == nil ? .seconds(1) : .milliseconds(50) }
}

/// Wakes the scheduler's loop early (a webhook queued, a run ended, a reload).
/// Signals before the wait are not lost: one pending wake is kept. One waiter
/// at a time (the scheduler's loop).
final class WakeSignal: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
        /// The current wait was cancelled before its continuation was stored.
        var cancelled = false
    }

    private let state = Mutex(State())

    func wake() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard let w = s.waiter else {
                s.pending = true
                return nil
            }
            s.waiter = nil
            return w
        }
        waiter?.resume()
    }

    /// Returns at the first wake or after `timeout`, whichever comes first.
    func wait(timeout: Duration) async {
        state.withLock { $0.cancelled = false }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: timeout) }
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { c in
                        let resumeNow = self.state.withLock { s -> Bool in
                            if s.pending || s.cancelled {
                                s.pending = false
                                return true
                            }
                            s.waiter = c
                            return false
                        }
                        if resumeNow { c.resume() }
                    }
                } onCancel: {
                    let w = self.state.withLock { s -> CheckedContinuation<Void, Never>? in
                        s.cancelled = true
                        defer { s.waiter = nil }
                        return s.waiter
                    }
                    w?.resume()
                }
            }
            await group.next()
            group.cancelAll()
        }
    }
}
