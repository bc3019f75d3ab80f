import Foundation
import Logging
import Synchronization
import Wire
import Workflow

extension RunService {
    /// A run holding (or about to hold) a worker. Shared with the event sink,
    /// which runs outside the actor, hence the lock.
    final class Active: Sendable {
        let jobId = RandomID.uuid()
        /// The pool's timer, which keeps the deadlines of this run's waits.
        let watch: WorkerWatch

        init(watch: WorkerWatch) {
            self.watch = watch
        }

        let cancelled = Mutex(false)
        /// Why one of the worker's events could not be stored, when one could
        /// not: the segment then does not count as done; the run goes on from
        /// what its checkpoints hold.
        let unstored = Mutex<String?>(nil)
        /// Bytes of events this run has stored, and why it was stopped if it
        /// passed `maxRunStorageBytes`.
        let storage = Mutex<(bytes: Int, exceeded: String?)>((0, nil))
        /// Agent steps of this run with a resident agent's turn in flight: one each.
        let residentTurns = Mutex<Set<String>>([])

        /// Counts `bytes` more of stored events; true once the run is past
        /// `limit` (and from then on), when it is to be stopped.
        func charge(_ bytes: Int, limit: Int) -> Bool {
            storage.withLock { s -> Bool in
                guard s.exceeded == nil else { return true }
                s.bytes += bytes
                guard s.bytes > limit else { return false }
                s.exceeded = "the run's events passed \(limit >> 20) MiB (server.maxRunStorageMB)"
                return true
            }
        }
        private let events = Mutex(EventCount())
        /// Secret values handed to this run's worker: redacted from everything persisted.
        let secrets = Mutex<Set<String>>([])
        var redactor: Redactor { Redactor(secrets.withLock { $0 }) }
        /// What the segment's worker claimed so far (nil until the segment
        /// starts), and the requests waiting for one of its steps to start.
        private let segment = Mutex(Segment())
        /// The worker's host pid, known once its job is sent: reports are its, not the gateway's.
        let workerPid = Mutex<Int32>(0)
        var workerActor: String { "worker:\(workerPid.withLock { $0 })" }
        /// `path\0name` of each secret the gateway refused a step: a worker's
        /// `PermissionDenied` on `secrets` is the gateway's decision only if it is here.
        let deniedSecrets = Mutex<Set<String>>([])

        private struct EventCount {
            var handled = 0
            /// Events whose handling began (persisting one can wait out a lost database).
            var arrived = 0
            var waiter: (target: Int, id: Int, continuation: CheckedContinuation<Void, Never>)?
            var waits = 0
            /// The wait whose time ran out, so a waiter that registers late does not hang.
            var expired = 0
        }

        var handledEvents: Int { events.withLock { $0.handled } }

        /// One more of the job's events is being handled.
        func eventArrived() { events.withLock { $0.arrived += 1 } }

        /// An event is still being persisted: the wait for the rest is not over.
        var handling: Bool { events.withLock { $0.arrived > $0.handled } }

        /// One more of the job's events is persisted.
        func eventHandled() {
            let ready = events.withLock { s -> CheckedContinuation<Void, Never>? in
                s.handled += 1
                guard let w = s.waiter, s.handled >= w.target else { return nil }
                s.waiter = nil
                return w.continuation
            }
            ready?.resume()
        }

        /// Returns once `count` events are persisted, or after `limit`: the job's
        /// answer can overtake its last notifications, and usually does (the
        /// last one is still being stored). The limit is kept by `watch`, whose
        /// timer runs anyway while a job does: a task asleep for it cost a
        /// timer, a cancel and their wake-ups on nearly every run.
        func waitForEvents(_ count: Int, limit: Duration, watch: WorkerWatch) async {
            if events.withLock({ $0.handled >= count }) { return }
            let id = events.withLock { s in
                s.waits += 1
                return s.waits
            }
            let reminder = watch.remind(after: limit) { [self] in
                let w = events.withLock { s -> CheckedContinuation<Void, Never>? in
                    s.expired = id
                    guard let w = s.waiter, w.id == id else { return nil }
                    s.waiter = nil
                    return w.continuation
                }
                w?.resume()
            }
            defer { watch.forget(reminder) }
            await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
                let done = events.withLock { s -> Bool in
                    if s.handled >= count || s.expired == id { return true }
                    s.waiter = (count, id, cont)
                    return false
                }
                if done { cont.resume() }
            }
        }

        /// Waits for `count` events for as long as they keep coming; false when
        /// none came for `quiet` and fewer than `count` are in. Every event a
        /// worker sent before its answer was read before the answer, so only a
        /// worker that miscounted leaves the wait short.
        func waitForAllEvents(_ count: Int, quiet: Duration, watch: WorkerWatch) async -> Bool {
            while true {
                let before = handledEvents
                if before >= count { return true }
                await waitForEvents(count, limit: quiet, watch: watch)
                let after = handledEvents
                if after >= count { return true }
                if after == before, !handling { return false }
            }
        }

        enum Verdict { case persist, drop, refuse(SegmentClaims.Violation) }

        /// Checks one event against the segment's claims.
        func judge(_ event: JobEvent) -> Verdict {
            withClaims { c -> Verdict in
                guard let claims = c, !claims.isOver else { return .drop }
                do throws(SegmentClaims.Violation) {
                    try c?.accept(event)
                    return .persist
                } catch {
                    c?.refuse(error)
                    return .refuse(error)
                }
            }
        }

        /// Whether `step` runs in this segment now: nil while it has not
        /// started, false once the segment is over (it never will).
        func running(_ step: String) -> Bool? {
            segment.withLock { Self.state(of: step, in: $0.claims) }
        }

        private static func state(of step: String, in claims: SegmentClaims?) -> Bool? {
            guard let claims, !claims.isOver else { return false }
            return claims.isRunning(step) ? true : nil
        }
    }
}

// MARK: The segment's claims, and waiting for a step's start

extension RunService.Active: RunningSteps {
    /// A request can overtake the `step.started` sent before it: the worker's
    /// events are stored one after the other (each a commit), its requests are
    /// served at once. Such a request waits until the claims say the step runs,
    /// or that it never will, and is answered by the change that says so.
    struct Segment {
        var claims: SegmentClaims?
        var waiters: [Int: (step: String, resolve: @Sendable (Bool) -> Void)] = [:]
        var lastWait = 0
        /// Waits begun but not yet registered, and those of them whose time ran out.
        var beginning: Set<Int> = []
        var expired: Set<Int> = []
    }

    /// Reads or changes the claims. A change that starts a waited-for step, or
    /// ends the segment, resolves its waiters (once the lock is released).
    func withClaims<T: Sendable>(_ body: (inout SegmentClaims?) -> T) -> T {
        let (value, ready) = segment.withLock { s -> (T, [(@Sendable (Bool) -> Void, Bool)]) in
            let value = body(&s.claims)
            guard !s.waiters.isEmpty else { return (value, []) }
            var ready: [(@Sendable (Bool) -> Void, Bool)] = []
            for (id, w) in s.waiters {
                guard let state = Self.state(of: w.step, in: s.claims) else { continue }
                s.waiters[id] = nil
                ready.append((w.resolve, state))
            }
            return (value, ready)
        }
        for (resolve, state) in ready { resolve(state) }
        return value
    }

    /// Calls `resolve` once, with true when `step` runs in this segment or
    /// false once the segment is over: at once if either is so already, and
    /// then nil is returned. Otherwise returns the wait, for `stopWaiting`.
    func whenRunning(_ step: String, _ resolve: @escaping @Sendable (Bool) -> Void) -> Int? {
        let id = beginWait()
        return register(id, step, resolve) ? id : nil
    }

    /// Ends a wait that has not been resolved, without calling its `resolve`;
    /// false if it was resolved already (or is being).
    func stopWaiting(_ wait: Int) -> Bool {
        segment.withLock { $0.waiters.removeValue(forKey: wait) != nil }
    }

    /// Whether `step` runs in this segment, waiting up to `limit` for its
    /// start. The limit is kept by the pool's `watch`, whose timer runs anyway
    /// while a job does, so a wait costs no timer of its own.
    func waitUntilRunning(_ step: String, limit: Duration) async -> Bool {
        if let state = running(step) { return state }
        let id = beginWait()
        let reminder = watch.remind(after: limit) { [self] in expire(id) }
        defer { watch.forget(reminder) }
        return await withCheckedContinuation { (cont: CheckedContinuation<Bool, Never>) in
            _ = register(id, step) { cont.resume(returning: $0) }
        }
    }

    private func beginWait() -> Int {
        segment.withLock { s in
            s.lastWait += 1
            s.beginning.insert(s.lastWait)
            return s.lastWait
        }
    }

    /// Registers a begun wait; false when it was resolved at once instead
    /// (the step's state is known, or its time ran out before it was registered).
    private func register(_ id: Int, _ step: String, _ resolve: @escaping @Sendable (Bool) -> Void) -> Bool {
        let known = segment.withLock { s -> Bool? in
            s.beginning.remove(id)
            if s.expired.remove(id) != nil { return false }
            if let state = Self.state(of: step, in: s.claims) { return state }
            s.waiters[id] = (step, resolve)
            return nil
        }
        guard let known else { return true }
        resolve(known)
        return false
    }

    /// The wait's time ran out: it resolves false, now or when it registers.
    private func expire(_ id: Int) {
        let resolve = segment.withLock { s -> (@Sendable (Bool) -> Void)? in
            if s.beginning.contains(id) { s.expired.insert(id) }
            return s.waiters.removeValue(forKey: id)?.resolve
        }
        resolve?(false)
    }
}
