import Histogram
import Synchronization

/// Latencies (ms) for the percentiles of `GET /v1/workers`, in bounded memory
/// however long the gateway runs: an HDR histogram of every sample (three
/// significant digits), and the most recent samples kept exactly, which is
/// what `?spawnsFrom=N` (the benchmark) reads.
public final class LatencySamples: Sendable {
    public struct Summary: Sendable {
        /// How many samples the percentiles are over.
        public var count: Int
        /// Every sample so far.
        public var total: Int
        public var p50: Double
        public var p99: Double
    }

    /// Microseconds; a slower sample is counted as this.
    static let highestMicros: UInt64 = 600_000_000

    private struct State {
        var all = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: LatencySamples.highestMicros,
                                    numberOfSignificantValueDigits: .three)
        var recent: [Double] = []
        /// Where the next sample goes once `recent` is full.
        var next = 0
        var total = 0
    }

    private let state = Mutex(State())
    let recentCapacity: Int

    public init(recentCapacity: Int = 4096) {
        self.recentCapacity = max(1, recentCapacity)
    }

    public func append(_ ms: Double) {
        let micros = ms.isFinite ? UInt64(Swift.min(Swift.max(ms * 1000, 1), Double(Self.highestMicros))) : Self.highestMicros
        state.withLock { s in
            _ = s.all.record(micros)
            if s.recent.count < recentCapacity { s.recent.append(ms) } else { s.recent[s.next] = ms }
            s.next = (s.next + 1) % recentCapacity
            s.total += 1
        }
    }

    /// Over the samples after the first `skipping`: exact while the recent ones
    /// still hold them all; over the histogram of every sample when all are
    /// asked for and some are no longer held; else over the recent ones only
    /// (`count` then says how many that is).
    public func summary(skipping: Int = 0) -> Summary {
        let (recent, total, all) = state.withLock { s in
            (Array(s.recent[s.next...] + s.recent[..<s.next]), s.total, s.recent.count < recentCapacity ? nil : s.all)
        }
        let firstHeld = total - recent.count
        if skipping == 0, firstHeld > 0, let all {
            return Summary(count: total, total: total, p50: Double(all.valueAtPercentile(50)) / 1000,
                           p99: Double(all.valueAtPercentile(99)) / 1000)
        }
        let wanted = recent.dropFirst(Swift.max(0, Swift.min(skipping, total) - firstHeld)).sorted()
        func pct(_ p: Double) -> Double { wanted.isEmpty ? 0 : wanted[Swift.min(wanted.count - 1, Int(Double(wanted.count) * p))] }
        return Summary(count: wanted.count, total: total, p50: pct(0.5), p99: pct(0.99))
    }
}

extension Duration {
    /// Fractions kept: a template spawn is a few milliseconds.
    var inMilliseconds: Double {
        let (s, atto) = components
        return Double(s) * 1000 + Double(atto) / 1e15
    }
}
