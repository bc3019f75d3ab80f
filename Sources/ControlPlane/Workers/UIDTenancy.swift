import Foundation
import Synchronization

/// Which job held each worker uid, and when.
///
/// The kernel's record of a seccomp kill names a uid and a time, nothing else of
/// ours, and it reaches `/dev/kmsg` through the kernel's audit thread, which
/// under load prints it after the job, and even its worker, have ended. Asking
/// "who holds this uid now" then answers nobody. So every job's stay on its
/// worker's uid is kept, from the job's start to the worker's end, for
/// `retention` after that, and a record is matched by its own time. A uid comes
/// round again only after 50,000 spawns (`WorkerSpawner`), so two stays of one
/// uid are far apart in time.
public final class UIDTenancy: Sendable {
    public struct Tenant: Sendable, Equatable {
        public let jobId: String
        public let runId: String?
        public let workflow: String?
    }

    private struct Stay {
        let tenant: Tenant
        let from: Date
        var to: Date?
    }

    private struct State {
        var stays: [UInt32: [Stay]] = [:]
        /// Stays in the order they ended, each forgotten once `retention` has passed.
        var ended: [(uid: UInt32, at: Date)] = []
        var endedHead = 0
    }

    /// The kernel stamps its records from its coarse clock, which moves once a
    /// tick (up to 10 ms) and so reads up to a tick behind the time of the kill: a
    /// kill in a job's first milliseconds can carry a stamp from just before the
    /// job's start. Uids are reused minutes apart, so this slack cannot reach
    /// another job's stay.
    static let stampSlack: TimeInterval = 0.02

    private let state = Mutex(State())
    private let retention: TimeInterval
    /// The run and workflow of a job, looked up as it starts (the egress
    /// directory forgets the job when it ends). Jobs that belong to no run (a
    /// resident agent or MCP server, a tool listing) have none.
    private let describe: @Sendable (String) -> (runId: String, workflow: String)?

    /// `retention`: the kernel's audit thread prints within seconds even under
    /// load; thirty keeps a few thousand stays at a hundred jobs a second.
    public init(retention: TimeInterval = 30, describe: @escaping @Sendable (String) -> (runId: String, workflow: String)? = { _ in nil }) {
        self.retention = retention
        self.describe = describe
    }

    /// `jobId` starts on the worker holding `uid`. Each worker serves one job, so
    /// a stay still open on that uid is one whose worker's end was never
    /// reported: it is dropped rather than stretched over the gap.
    public func began(uid: UInt32, jobId: String, at now: Date = Date()) {
        let described = describe(jobId)
        let tenant = Tenant(jobId: jobId, runId: described?.runId, workflow: described?.workflow)
        state.withLock { s in
            forgetExpired(&s, now: now)
            var stays = s.stays[uid, default: []]
            stays.removeAll { $0.to == nil }
            stays.append(Stay(tenant: tenant, from: now, to: nil))
            s.stays[uid] = stays
        }
    }

    /// The worker holding `uid` has exited (with it, every process of its job).
    public func ended(uid: UInt32, at now: Date = Date()) {
        state.withLock { s in
            forgetExpired(&s, now: now)
            guard var stays = s.stays[uid], let open = stays.lastIndex(where: { $0.to == nil }) else { return }
            stays[open].to = now
            s.stays[uid] = stays
            s.ended.append((uid, now))
        }
    }

    /// The job that held `uid` at `time`. Two stays that both match name nobody:
    /// a wrong name in the audit log is worse than none.
    public func tenant(uid: UInt32, at time: Date) -> Tenant? {
        state.withLock { s in
            let matching = (s.stays[uid] ?? []).filter {
                time >= $0.from.addingTimeInterval(-Self.stampSlack) && $0.to.map { time <= $0 } ?? true
            }
            return matching.count == 1 ? matching[0].tenant : nil
        }
    }

    /// Stays that ended more than `retention` ago, oldest first: a queue, so a
    /// job's start costs no walk over every uid.
    private func forgetExpired(_ s: inout State, now: Date) {
        while s.endedHead < s.ended.count, now.timeIntervalSince(s.ended[s.endedHead].at) >= retention {
            let (uid, at) = s.ended[s.endedHead]
            s.endedHead += 1
            s.stays[uid]?.removeAll { $0.to.map { $0 <= at } ?? false }
            if s.stays[uid]?.isEmpty == true { s.stays[uid] = nil }
        }
        if s.endedHead >= 4096, s.endedHead * 2 >= s.ended.count {
            s.ended.removeFirst(s.endedHead)
            s.endedHead = 0
        }
    }
}
