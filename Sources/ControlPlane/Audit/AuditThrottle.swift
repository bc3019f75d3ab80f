/// A token bucket for entries a caller can provoke at will (refused requests,
/// refused connections): at most `perSecond` on average, bursts of `burst`.
/// What it holds back is counted, never lost: the next admitted entry, or a
/// summary when its owner ends, says how many were left out.
struct AuditThrottle: Sendable {
    let perSecond: Double
    let burst: Double
    private var allowance: Double
    private var last = ContinuousClock.now
    /// Held back since the last admitted entry.
    private(set) var suppressed = 0

    init(perSecond: Double, burst: Int) {
        self.perSecond = perSecond
        self.burst = Double(burst)
        allowance = Double(burst)
    }

    /// nil: hold this one back (counted). Otherwise how many were held back before it.
    mutating func admit() -> Int? {
        let now = ContinuousClock.now
        let elapsed = now - last
        last = now
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        allowance = min(burst, allowance + seconds * perSecond)
        guard allowance >= 1 else {
            suppressed += 1
            return nil
        }
        allowance -= 1
        defer { suppressed = 0 }
        return suppressed
    }
}
