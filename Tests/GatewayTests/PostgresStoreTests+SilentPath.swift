import Foundation
import PostgresFixture
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

extension PostgresStoreTests {
    @Test("a connection whose path dies silently is given up after storage.statementTimeoutSeconds: runs go on over a new one rather than wait out TCP's retransmissions")
    func silentPath() async throws {
        let url = try await PostgresCluster.shared.database()
        let port = try #require(url.split(separator: ":").last?.split(separator: "/").first.map(String.init))
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("blackhole-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let proxy = try await FixturePeer.start("blackhole_proxy.py", ["--to", port], log: log)
        defer { proxy.stop() }
        let proxied = url.replacingOccurrences(of: ":\(port)/", with: ":\(proxy.port)/")
        let gw = try await TestGateway.started(workflows: Self.workflows,
                                               config: Self.config(url: proxied, poolSize: 2, storage: ", statementTimeoutSeconds: 2"))
        defer { gw.cleanupLater() }
        let before = try await gw.run("hello", ["name": "before"])
        #expect(before["status"] == "succeeded", "\(before)")

        // Every connection the gateway holds now carries nothing, and says nothing.
        proxy.signal(SIGUSR1)
        let after = try await gw.run("hello", ["name": "after"])
        #expect(after["status"] == "succeeded" && after["output"] == "hello after",
                "\(after)\n\(gw.logText.suffix(3000))")
        let forwarded = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(gw.logText.contains("the database did not answer a statement in 2 s"), "\(gw.logText.suffix(3000))\nforwarder:\n\(forwarded)")
        let listed = try await gw.get("/runs?limit=10").json?["runs"].list ?? []
        #expect(listed.count == 2 && listed.allSatisfy { $0["status"] == "succeeded" }, "\(listed)")
    }

    @Test("storage.statementTimeoutSeconds out of range is refused at start, naming the key")
    func statementTimeoutRange() async throws {
        let gw = try TestGateway(workflows: Self.workflows,
                                 config: Self.config(url: "postgres://skelm@127.0.0.1:5432/runs", storage: ", statementTimeoutSeconds: 0"))
        defer { gw.cleanupLater() }
        await #expect(throws: GatewayFailure.self) { try await gw.start() }
        #expect(gw.logText.contains("storage.statementTimeoutSeconds") && gw.logText.contains("between 1 and 3600"), "\(gw.logText)")
    }
}
