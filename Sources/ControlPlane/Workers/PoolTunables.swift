import Foundation
import Wire

/// What a reload may change in a running pool: how many workers it keeps and
/// the limits a job gets. Read where a job is dispatched or the pool refills,
/// so a change applies to the next job; a job already running keeps its own.
/// (What is built into a worker's sandbox at spawn, such as its rlimits, is
/// not here: that needs a restart.)
public struct PoolTunables: Sendable, Equatable {
    public var minSpare: Int
    public var max: Int
    public var stepLimits: StepLimits
    public var diskLimitBytes: UInt64
    public var diskLimitEntries: Int

    public init(_ c: WorkerPoolConfiguration) {
        minSpare = c.minSpare
        max = c.max
        stepLimits = c.stepLimits
        diskLimitBytes = c.diskLimitBytes
        diskLimitEntries = c.diskLimitEntries
    }
}

extension WorkerPool {
    /// The pool's sizes and job limits now (config's, or a reload's).
    public nonisolated var tunables: PoolTunables { tunableState.withLock { $0 } }

    /// A reload's sizes and limits. More spare workers start now; fewer leave
    /// the idle ones to be used up (each is single-use) rather than killed.
    public func retune(_ new: PoolTunables) {
        tunableState.withLock { $0 = new }
        replenish()
    }
}
