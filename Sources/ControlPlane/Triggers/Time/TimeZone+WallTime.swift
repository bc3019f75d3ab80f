import Foundation

/// The one rule every time trigger uses to turn a wall-clock reading into an
/// instant, so cron, `at` with `tz` and catch-up agree on what a local time means:
///
/// - a wall time that exists once is that instant;
/// - a wall time a fall-back repeats is its *first* occurrence (the repeat
///   never fires again: a schedule names a wall time, and it has been reached);
/// - a wall time a spring-forward skips is the first instant after the gap
///   (03:00 local on the US spring-forward day for 02:30). Every skipped time
///   maps to that same instant, so they fire once, together, not once each.
///
/// This mapping never goes backwards as the wall time grows, which is what lets
/// a search run on the wall clock and convert only its result.
///
/// Offsets are probed a day either side of the wall time, which assumes a zone
/// changes its offset at most once in two days; no zone in the tz database has
/// come close since the 1940s.
extension TimeZone {
    /// Seconds east of UTC at instant `t` (seconds since the epoch).
    func offset(at t: Int) -> Int {
        secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(t)))
    }

    /// The instant (seconds since the epoch) wall time `wall` names in this zone.
    func instant(forWall wall: Int) -> Int {
        let before = offset(at: wall - 86_400)
        let after = offset(at: wall + 86_400)
        var earliest: Int?
        for candidate in before == after ? [before] : [before, after] where offset(at: wall - candidate) == candidate {
            earliest = Swift.min(earliest ?? .max, wall - candidate)
        }
        if let earliest { return earliest }
        // A gap: no offset maps back onto `wall`; the next valid instant is the transition.
        return firstInstant(from: wall - 86_400, to: wall + 86_400) { offset(at: $0) != before }
    }

    /// The smallest wall time whose instant under the rule is `t` or later: the
    /// wall clock at `t`, except while a fall-back replays an hour; then every
    /// wall time in the replay already fired on the first pass, so it is where
    /// the replayed stretch ends.
    func earliestWall(notBefore t: Int) -> Int {
        let wall = t + offset(at: t)
        let first = instant(forWall: wall)
        if first >= t { return wall }
        let firstPass = offset(at: first)
        let transition = firstInstant(from: first, to: t) { offset(at: $0) != firstPass }
        return transition + firstPass
    }

    /// The first instant in `(low, high]` where `changed` holds, assuming it
    /// holds from some point on; a binary search, 18 probes over two days.
    private func firstInstant(from low: Int, to high: Int, where changed: (Int) -> Bool) -> Int {
        var low = low, high = high
        while high - low > 1 {
            let mid = low + (high - low) / 2
            if changed(mid) { high = mid } else { low = mid }
        }
        return high
    }
}
