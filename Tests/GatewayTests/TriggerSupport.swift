import Foundation
import SkelmClient
import Testing
import Workflow

/// A gateway whose scheduler reads its time from a file the test moves:
/// cron slots, catch-up and DST without waiting for the wall clock.
extension TestGateway {
    var clockFile: String { dir + "/clock" }

    func useClock(_ instant: String) throws {
        environment["SKELM_SCHEDULER_CLOCK_FILE"] = clockFile
        try setClock(instant)
    }

    func setClock(_ instant: String) throws {
        let date = try Date(instant, strategy: .iso8601)
        try "\(date.timeIntervalSince1970)".write(toFile: clockFile, atomically: true, encoding: .utf8)
    }

    /// The runs a trigger fired, oldest first.
    func triggeredRuns(_ trigger: String) async throws -> [JSONValue] {
        let r = try await get("/runs?limit=1000&trigger=\(trigger.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? trigger)")
        guard case let .array(runs)? = r.json?["runs"] else { throw GatewayFailure(description: "GET /runs: \(r.status) \(r.errorMessage)") }
        return runs.reversed()
    }

    /// Waits until the trigger has fired `count` runs and all have ended, then
    /// a little longer to see that no more come.
    @discardableResult
    func awaitTriggered(_ trigger: String, count: Int, timeout: Duration = .seconds(60)) async throws -> [JSONValue] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let runs = try await triggeredRuns(trigger)
            let ended = runs.filter { ["succeeded", "failed", "cancelled"].contains($0["status"]?.stringValue ?? "") }
            if runs.count >= count, ended.count == runs.count {
                try await Task.sleep(for: .milliseconds(600))
                return try await triggeredRuns(trigger)
            }
            if ContinuousClock.now >= deadline {
                throw GatewayFailure(description: "\(trigger) fired \(runs.count) runs (\(ended.count) ended), expected \(count)\n" + logText.suffix(3000))
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    func trigger(_ id: String, upcoming: Int = 5) async throws -> JSONValue {
        let r = try await get("/triggers/\(id)?upcoming=\(upcoming)")
        guard r.status == 200, let json = r.json else { throw GatewayFailure(description: "GET /triggers/\(id): \(r.status) \(r.errorMessage)") }
        return json
    }

    func auditEntries(action: String) async throws -> [JSONValue] {
        let r = try await get("/audit?action=\(action)&limit=1000")
        guard case let .array(entries)? = r.json?["entries"] else { return [] }
        return entries
    }
}

extension JSONValue {
    var int: Int? { if case let .number(n) = self { Int(n) } else { nil } }
    var array: [JSONValue] { if case let .array(a) = self { a } else { [] } }
}
