import Foundation
import SkelmClient
import Testing
import Workflow

/// Triggers that watch: a directory (inotify in the control plane, debounced;
/// the steps get the paths, not the directory) and a poll probe (a sandboxed
/// step whose result is compared with the last one).
@Suite("File-watch and poll triggers", .serialized)
struct WatchTriggerTests {
    @Test("a burst of file events becomes one run with the paths; the step cannot read the watched directory")
    func fileWatch() async throws {
        let gw = try TestGateway(workflows: [:])
        let inbox = gw.dir + "/inbox"
        try FileManager.default.createDirectory(atPath: inbox, withIntermediateDirectories: true)
        try """
            id: inbox
            steps:
              - id: peek
                exec: { argv: [sh, -c, 'cat "$DIR/$F"'], env: { DIR: "${{ input.dir }}", F: "${{ input.events[0].path }}" } }
            triggers:
              - file-watch: { dir: \(inbox), debounce: 2s, pattern: "*.csv", events: [create, modify] }
            """.write(toFile: gw.dir + "/workflows/inbox.workflow.yaml", atomically: true, encoding: .utf8)
        try await gw.start()
        defer { gw.cleanupLater() }
        #expect(try await gw.trigger("inbox.file-watch")["state"]?.stringValue == "armed")
        for _ in 0..<200 where try await gw.trigger("inbox.file-watch")["watching"] != .bool(true) {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(try await gw.trigger("inbox.file-watch")["watching"] == .bool(true))

        // Well inside the 2 s debounce, even on a loaded host.
        for i in 0..<20 {
            try "a,b\n\(i),\(i)\n".write(toFile: "\(inbox)/part-\(i).csv", atomically: false, encoding: .utf8)
        }
        try "ignored".write(toFile: "\(inbox)/notes.txt", atomically: false, encoding: .utf8)
        let runs = try await gw.awaitTriggered("inbox.file-watch", count: 1, timeout: .seconds(30))
        #expect(runs.count == 1, "one run for the burst")
        let events = runs.first?["input"]?["events"]?.array ?? []
        #expect(Set(events.compactMap { $0["path"]?.stringValue }) == Set((0..<20).map { "part-\($0).csv" }))
        #expect(events.allSatisfy { $0["event"]?.stringValue == "create" })
        #expect(runs.first?["input"]?["dir"]?.stringValue == inbox)

        // The watched directory is the control plane's to read: the step that tries is refused by its sandbox.
        let run = try await gw.waitForStatus(runs.first?["id"]?.stringValue ?? "", ["failed", "succeeded"])
        #expect(run["status"]?.stringValue == "failed")
        #expect(run["error"]?["message"]?.stringValue?.contains("Permission denied") == true, "\(run["error"] ?? .null)")
    }

    @Test("a poll probe runs sandboxed on its interval: the first result is a baseline, a change fires; a failing probe is recorded")
    func poll() async throws {
        let gw = try await TestGateway.started(workflows: [
            "ticker.workflow.yaml": """
                id: ticker
                steps:
                  - { id: seen, run: echo changed }
                triggers:
                  - poll:
                      every: 5s
                      probe: { exec: { argv: [python3, -c, 'import time; print(int(time.time() // 5))'] } }
                  - id: broken
                    poll: { every: 5s, probe: { run: "echo nope >&2; exit 4" } }
                """,
        ])
        defer { gw.cleanupLater() }
        // Probes at least 5 s apart each see a later value (the next one, or a
        // later one on a loaded host): a change fires, with both values.
        let runs = try await gw.awaitTriggered("ticker.poll", count: 1, timeout: .seconds(40))
        let input = runs.first?["input"]
        let value = try #require(input?["value"]?.int, "\(input ?? .null)"), previous = try #require(input?["previous"]?.int, "\(input ?? .null)")
        #expect(value > previous, "\(input ?? .null)")
        // Probes are runs of their own, filed under the trigger's `#probe`; more of them than fires (the baseline, the unchanged ones).
        let probes = try await gw.triggeredRuns("ticker.poll#probe")
        #expect(probes.count > runs.count)
        #expect(probes.first?["workflow"]?.stringValue == "ticker.poll.probe")

        var broken = JSONValue.null
        for _ in 0..<100 {
            broken = try await gw.trigger("ticker.broken")
            if broken["lastError"] != nil { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(broken["lastError"]?.stringValue?.contains("probe run") == true, "\(broken)")
        #expect(broken["fired"]?.int == 0)
        #expect(try await gw.auditEntries(action: "trigger.error").contains { $0["details"]?["trigger"]?.stringValue == "ticker.broken" })
        #expect(try await gw.get("/health").status == 200)
    }
}
