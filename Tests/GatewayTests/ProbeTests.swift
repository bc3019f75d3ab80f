import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// What a load balancer or a service manager asks: is it alive, may it have traffic.
@Suite("Liveness and readiness probes", .serialized)
struct ProbeTests {
    @Test("healthz and readyz answer without a token on a gateway that needs one")
    func publicProbes() async throws {
        let gw = try TestGateway(workflows: TestWorkflows.all, config: TestGateway.config(server:
            "{ host: 127.0.0.1, port: 0, auth: { mode: bearer, tokens: [ { name: ops, scope: admin, env: PROBE_TOKEN } ] } }"))
        gw.environment = ["PROBE_TOKEN": "probe-token-0123456789"]
        defer { gw.cleanupLater() }
        try await gw.start()
        var anonymous = gw.tcp!
        anonymous.token = nil
        let live = try await anonymous.get("/healthz")
        #expect(live.status == 200)
        #expect(live.json?["status"] == "ok")
        let ready = try await anonymous.get("/readyz")
        #expect(ready.status == 200)
        #expect(ready.json?["ready"] == true)
        #expect(try await anonymous.get("/runs").status == 401, "only the probes are public")
    }

    @Test("readyz says 503 while the gateway drains, and why")
    func drainingIsNotReady() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        // Long enough that the drain outlasts the polling below on a loaded host.
        let run = try await gw.run("slow", ["seconds": 15], sync: false)
        let id = try #require(run["id"]?.stringValue)
        _ = try await gw.waitForStatus(id, ["running"])
        guard let pid = gw.process?.processIdentifier else { Issue.record("no gateway process"); return }
        kill(pid, SIGTERM)
        var answer: GatewayClient.Reply?
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            answer = try? await gw.tcp.get("/readyz")
            if answer?.status == 503 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(answer?.status == 503, "\(String(describing: answer?.errorMessage))")
        #expect(answer?.json?["ready"] == false)
        #expect(answer?.json?["reason"]?.stringValue?.hasPrefix("draining") == true)
    }
}
