import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// Every completed step at any depth is a checkpoint: a crash, a park or a
/// worker's death costs only what was in flight, and what was in flight runs
/// again only if it may.
@Suite("Durable at any depth", .serialized)
final class DurabilityTests {
    static let workflows: [String: String] = [
        "many.workflow.yaml": """
            id: many
            steps:
              - id: fan
                forEach:
                  items: "${{ input.items }}"
                  steps:
                    - id: work
                      idempotent: true
                      exec: { argv: [sh, -c, 'sleep 0.1; echo "$N"'], env: { N: "${{ item }}" } }
            result: "${{ steps.fan.output }}"
            """,
        "parked.workflow.yaml": """
            id: parked
            steps:
              - id: fan
                forEach:
                  items: [1, 2]
                  steps:
                    - id: mark
                      exec: { argv: [sh, -c, 'echo "item $N"'], env: { N: "${{ item }}" } }
                    - id: gate
                      approval: { message: "item ${{ item }}?" }
              - id: both
                parallel:
                  - { id: left, wait: {} }
                  - { id: right, run: echo right }
            """,
        "oneshot.workflow.yaml": """
            id: oneshot
            steps:
              - { id: first, run: echo first }
              - id: charge
                exec: { argv: [sleep, "30"] }
            """,
        "caller.workflow.yaml": """
            id: caller
            steps:
              - id: ask
                invoke: answerer
            result: "${{ steps.ask.output }}"
            """,
        "answerer.workflow.yaml": """
            id: answerer
            steps:
              - id: hold
                wait: {}
            """,
        "retried.workflow.yaml": """
            id: retried
            steps:
              - id: nap
                retry: 1
                exec: { argv: [sh, -c, 'sleep "$S"; echo rested'], env: { S: "${{ input.seconds }}" } }
            """,
    ]

    let gw: TestGateway

    init() async throws {
        gw = try await TestGateway.started(workflows: Self.workflows)
    }

    deinit { gw.cleanupLater() }

    func steps(_ id: String) async throws -> [JSONValue] {
        try await gw.get("/runs/\(id)").json?["steps"].list ?? []
    }

    func starts(_ id: String) async throws -> [String: Int] {
        let events = try await gw.get("/runs/\(id)/events?limit=10000", headers: [("Accept", "application/json")]).json?["events"].list ?? []
        var out: [String: Int] = [:]
        for e in events where e["type"] == "step.started" { out[e["step"]?.stringValue ?? "", default: 0] += 1 }
        return out
    }

    func approveNext(_ id: String) async throws -> JSONValue {
        for _ in 0..<500 {
            if let a = try await gw.get("/approvals?run=\(id)").json?["approvals"].list.first {
                let r = try await gw.post("/approvals/\(a["id"]!.stringValue!)/approve", [:])
                #expect(r.status == 200, "\(r.errorMessage)")
                return a
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw GatewayFailure(description: "run \(id) never asked for an approval")
    }

    @Test("SIGKILL mid-way through a forEach and while parked deep: after restart every run finishes, no completed step runs twice, the audit chain verifies")
    func crash() async throws {
        let items = JSONValue.array((0..<100).map { .number(Double($0)) })
        let parked = try #require(try await gw.run("parked", sync: false)["id"]?.stringValue)
        _ = try await gw.waitForStatus(parked, ["waiting"])
        let first = try await approveNext(parked)
        #expect(first["step"] == "fan[0]/gate")
        // Parked again, at the second item's approval.
        for _ in 0..<500 {
            if try await gw.get("/approvals?run=\(parked)").json?["approvals"].list.first?["step"] == "fan[1]/gate" { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        // Started once the other run is parked deep, so it is under way when the gateway dies.
        let many = try #require(try await gw.run("many", ["items": items], sync: false)["id"]?.stringValue)
        // Kill once a good part of the 100 items is done (polls are slow on a loaded machine: not a precise point).
        var done = 0
        for _ in 0..<3000 {
            done = try await steps(many).filter { $0["status"] == "succeeded" && $0["path"]?.stringValue?.hasSuffix("/work") == true }.count
            if done >= 30 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(done >= 30 && done < 100, "killed mid-way: \(done) done")
        await gw.stop(signal: SIGKILL)
        try await gw.start()

        let finished = try await gw.waitForStatus(many, ["succeeded", "failed"], timeout: .seconds(60))
        #expect(finished["status"] == "succeeded", "\(finished["error"] ?? .null)")
        #expect(finished["output"] == items)
        let counts = try await starts(many)
        #expect((0..<100).allSatisfy { counts["fan[\($0)]/work"] ?? 0 >= 1 })
        // Only what was in flight at the kill ran again.
        let twice = counts.filter { $0.key.hasSuffix("/work") && $0.value > 1 }
        #expect(twice.count <= 1, "\(twice)")
        #expect(twice.values.allSatisfy { $0 == 2 })

        // The parked run waited through the crash, and goes on from where it was.
        #expect(try await gw.get("/runs/\(parked)").json?["status"] == "waiting")
        _ = try await approveNext(parked)
        _ = try await gw.waitForStatus(parked, ["waiting"])
        for _ in 0..<500 {
            if try await steps(parked).contains(where: { $0["path"] == "both/left" && $0["status"] == "waiting" }) { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let r = try await gw.post("/runs/\(parked)/resume", ["output": "ok"])
        #expect(r.status == 200, "\(r.errorMessage)")
        let end = try await gw.waitForStatus(parked, ["succeeded", "failed"])
        #expect(end["status"] == "succeeded", "\(end)")
        let parkedCounts = try await starts(parked)
        for path in ["fan[0]/mark", "fan[1]/mark", "fan[0]/gate", "fan[1]/gate", "both/right", "both/left"] {
            #expect(parkedCounts[path] == 1, "\(path): \(parkedCounts[path] ?? 0)")
        }
        let verify = try await gw.cli(["audit", "verify"])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    }

    @Test("a parent and its child both survive a SIGKILL: the child's wait is resumed after the restart and the parent takes its output")
    func childSurvives() async throws {
        let parent = try #require(try await gw.run("caller", sync: false)["id"]?.stringValue)
        var child: String?
        for _ in 0..<500 {
            child = try await gw.get("/runs/\(parent)").json?["children"].list.first?["id"]?.stringValue
            if child != nil { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let childId = try #require(child)
        _ = try await gw.waitForStatus(childId, ["waiting"])
        await gw.stop(signal: SIGKILL)
        try await gw.start()
        #expect(try await gw.get("/runs/\(parent)").json?["status"] == "waiting")
        let r = try await gw.post("/runs/\(childId)/resume", ["output": "forty-two"])
        #expect(r.status == 200, "\(r.errorMessage)")
        let done = try await gw.waitForStatus(parent, ["succeeded", "failed"])
        #expect(done["status"] == "succeeded", "\(done)")
        #expect(done["output"] == "forty-two")
    }

    @Test("a step that is not idempotent, with no retries left, fails as Interrupted after a crash, naming itself and the cause")
    func interrupted() async throws {
        let id = try #require(try await gw.run("oneshot", sync: false)["id"]?.stringValue)
        for _ in 0..<1500 {
            if try await steps(id).contains(where: { $0["path"] == "charge" && $0["status"] == "running" }) { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        await gw.stop(signal: SIGKILL)
        try await gw.start()
        let done = try await gw.waitForStatus(id, ["succeeded", "failed"])
        #expect(done["status"] == "failed")
        #expect(done["error"]?["code"] == "Interrupted")
        #expect(done["error"]?["step"] == "charge")
        #expect(done["error"]?["message"]?.stringValue?.contains("the gateway stopped") == true, "\(done)")
        #expect(try await starts(id)["charge"] == 1, "it did not run again")
        let audited = try await gw.get("/audit?action=step.interrupted").json?["entries"].list ?? []
        #expect(audited.contains { $0["runId"]?.stringValue == id && $0["details"]?["rerun"] == "false" && $0["details"]?["step"] == "charge" })
    }

    @Test("a worker killed under a step with a retry left: the run goes on in a new worker, and the step's second attempt succeeds")
    func workerDeath() async throws {
        let id = try #require(try await gw.run("retried", ["seconds": "3"], sync: false)["id"]?.stringValue)
        var pid: Int32?
        for _ in 0..<1500 {
            let workers = try await gw.get("/v1/workers").json?["workers"].list ?? []
            if try await steps(id).contains(where: { $0["path"] == "nap" && $0["status"] == "running" }),
               case let .number(n)? = workers.first(where: { $0["state"] == "busy" })?["pid"] {
                pid = Int32(n)
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        kill(try #require(pid), SIGKILL)
        let done = try await gw.waitForStatus(id, ["succeeded", "failed"], timeout: .seconds(60))
        #expect(done["status"] == "succeeded", "\(done)")
        #expect(done["segments"] == 2)
        #expect(done["steps"].list.first { $0["path"] == "nap" }?["attempt"] == 2)
        let audited = try await gw.get("/audit?action=step.interrupted").json?["entries"].list ?? []
        #expect(audited.contains { $0["runId"]?.stringValue == id && $0["details"]?["rerun"] == "true"
            && $0["details"]?["cause"]?.stringValue?.contains("its worker died") == true }, "\(audited)")
    }
}
