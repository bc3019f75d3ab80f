import Foundation
import Synchronization

/// Which job held each worker uid, and when.
///
/// The kernel's record of a seccomp kill names a uid and a time, nothing else of
/// ours, and it reaches `/dev/kmsg` through the kernel's audit thread, which
/// under load prints it after the job, and even its worker, have ended. Asking
/// "who holds this uid now" then answers nobody, or a later job. So every job's
/// stay on its worker's uid is kept, from the job's start to the worker's end,
/// for `retention` after that, and a record is matched by its own time.
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
        var beganSinceSweep = 0
    }

    private let state = Mutex(State())
    private let retention: TimeInterval
    /// The run and workflow of a job, looked up as it starts (the egress
    /// directory forgets the job when it ends).
    private let describe: @Sendable (String) -> (runId: String, workflow: String)?

    public init(retention: TimeInterval = 120, describe: @escaping @Sendable (String) -> (runId: String, workflow: String)? = { _ in nil }) {
        self.retention = retention
        self.describe = describe
    }

    /// `jobId` starts on the worker holding `uid`. A stay still open on that uid
    /// (a worker that serves one job after another) ends here.
    public func began(uid: UInt32, jobId: String, at now: Date = Date()) {
        let described = describe(jobId)
        let tenant = Tenant(jobId: jobId, runId: described?.runId, workflow: described?.workflow)
        state.withLock { s in
            var stays = s.stays[uid, default: []].filter { $0.to.map { now.timeIntervalSince($0) < retention } ?? true }
            for i in stays.indices where stays[i].to == nil { stays[i].to = now }
            stays.append(Stay(tenant: tenant, from: now, to: nil))
            s.stays[uid] = stays
            s.beganSinceSweep += 1
            // Uids come round only every 50,000 spawns: without a sweep, stays of
            // uids not used again would be kept until then.
            if s.beganSinceSweep >= 1024 {
                s.beganSinceSweep = 0
                s.stays = s.stays.compactMapValues { list in
                    let kept = list.filter { $0.to.map { now.timeIntervalSince($0) < retention } ?? true }
                    return kept.isEmpty ? nil : kept
                }
            }
        }
    }

    /// The worker holding `uid` has exited (with it, every process of its job).
    public func ended(uid: UInt32, at now: Date = Date()) {
        state.withLock { s in
            guard var stays = s.stays[uid] else { return }
            for i in stays.indices where stays[i].to == nil { stays[i].to = now }
            s.stays[uid] = stays
        }
    }

    /// The job that held `uid` at `time`: the kernel stamps its records to the
    /// millisecond, cut, so a stay matches from a millisecond before its start.
    /// Two stays that both match (a uid handed out again within a millisecond)
    /// name nobody: a wrong name in the audit log is worse than none. Without a
    /// time, the stay still open on `uid`.
    public func tenant(uid: UInt32, at time: Date?) -> Tenant? {
        state.withLock { s in
            let stays = s.stays[uid] ?? []
            guard let time else { return stays.last { $0.to == nil }?.tenant }
            let matching = stays.filter { time >= $0.from.addingTimeInterval(-0.001) && $0.to.map { time <= $0 } ?? true }
            return matching.count == 1 ? matching[0].tenant : nil
        }
    }
}
