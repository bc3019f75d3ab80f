import Foundation

/// What one gateway tells the others sharing its database, on one PostgreSQL
/// NOTIFY channel. A signal is only a hint to look: what it points at is in
/// the tables, committed before the signal is delivered (NOTIFY is sent at
/// commit), so a receiver that misses one (a reconnect) loses nothing it
/// cannot read back.
public enum FleetSignal: Sendable, Equatable {
    /// An event of a run was committed.
    case event(runId: String, seq: Int)
    /// A run executing elsewhere was cancelled: its gateway kills its worker.
    case cancel(runId: String)
    /// The fleet's pause was set or lifted: every gateway reads it again.
    case admission

    public static let channel = "skelm_fleet"

    /// `sender kind fields…`, space separated (run ids and gateway ids hold no spaces).
    func payload(from sender: String) -> String {
        switch self {
        case let .event(runId, seq): "\(sender) e \(runId) \(seq)"
        case let .cancel(runId): "\(sender) c \(runId)"
        case .admission: "\(sender) a"
        }
    }

    static func parse(_ payload: String) -> (sender: String, signal: FleetSignal)? {
        let f = payload.split(separator: " ").map(String.init)
        guard f.count >= 2 else { return nil }
        switch f[1] {
        case "e" where f.count == 4: return Int(f[3]).map { (f[0], .event(runId: f[2], seq: $0)) }
        case "c" where f.count == 3: return (f[0], .cancel(runId: f[2]))
        case "a": return (f[0], .admission)
        default: return nil
        }
    }
}
