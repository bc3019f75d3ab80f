import Foundation
import PostgresFixture
import SkelmClient
import Testing
import Workflow

/// The real gateway on `storage.driver: postgres`, against a throwaway cluster.
@Suite("PostgreSQL store")
struct PostgresStoreTests {
    static let workflows: [String: String] = [
        // Built, approved, shipped: the approval suite's workflow.
        "deploy.workflow.yaml": ApprovalTests.workflows["deploy.workflow.yaml"]!,
        "steady.workflow.yaml": """
            id: steady
            steps:
              - { id: a, exec: { argv: [sh, -c, 'sleep 1; echo a'] } }
              - { id: b, exec: { argv: [sh, -c, 'sleep 1; echo b'] } }
              - { id: c, exec: { argv: [sh, -c, 'sleep 1; echo c'] } }
            """,
        "slow.workflow.yaml": """
            id: slow
            steps:
              - { id: a, exec: { argv: [sleep, "10"] } }
              - { id: b, exec: { argv: [sleep, "10"] } }
              - { id: c, exec: { argv: [sleep, "10"] } }
              - { id: d, exec: { argv: [sleep, "10"] } }
            """,
        "careful.workflow.yaml": """
            id: careful
            steps:
              - { id: a, exec: { argv: [echo, a] } }
              - { id: b, idempotent: true, exec: { argv: [echo, b] } }
              - { id: c, exec: { argv: [echo, c] } }
            """,
        "hello.workflow.yaml": """
            id: hello
            steps:
              - { id: greet, exec: { argv: [echo, "hello ${{ input.name }}"] } }
            """,
    ]

    static func databaseName(_ url: String) -> String {
        String(url.split(separator: "/").last!.split(separator: "?").first!)
    }

    /// The database gone: every session of it ended, and no new one let in.
    /// Two statements, so the refusal of new sessions is committed before any
    /// is ended (in one, they run as one transaction, and the gateway's pool
    /// could reconnect in between), and each end is waited for (up to 10 s):
    /// a session only signalled could still run the gateway's next query.
    static func cutOff(_ name: String) async throws {
        try await PostgresCluster.shared.execute("ALTER DATABASE \(name) ALLOW_CONNECTIONS false", database: "postgres")
        try await PostgresCluster.shared.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE datname = '\(name)'", database: "postgres")
    }

    /// Makes the database refuse the `time`th update of a run row that meets
    /// `condition`, once (a sequence counts: what a failed transaction takes from
    /// one stays taken).
    static func refuseUpdateOfRuns(database: String, named name: String, when condition: String, time: Int) async throws {
        try await PostgresCluster.shared.execute("""
            CREATE SEQUENCE \(name)_count;
            CREATE FUNCTION \(name)() RETURNS trigger AS $$
            BEGIN
              IF \(condition) AND nextval('\(name)_count') = \(time) THEN
                RAISE EXCEPTION 'refused for the test';
              END IF;
              RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER \(name) BEFORE UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION \(name)();
            """, database: database)
    }

    static func config(url: String, poolSize: Int = 4, storage: String = "") -> String {
        TestGateway.defaultConfig + "\nstorage: { driver: postgres, url: \"\(url)\", poolSize: \(poolSize)\(storage) }\n"
    }

    @Test("runs, their events, approvals and the dashboard live in PostgreSQL, and a run parked before a restart finishes after it")
    func endToEnd() async throws {
        let url = try await PostgresCluster.shared.database()
        let gw = try await TestGateway.started(workflows: Self.workflows, config: Self.config(url: url))
        defer { gw.cleanupLater() }
        let hello = try await gw.run("hello", ["name": "pg"])
        #expect(hello["status"] == "succeeded", "\(hello)")
        #expect("\(hello)".contains("hello pg"))
        let helloId = try #require(hello["id"]?.stringValue)
        let (events, _) = try await gw.events(helloId)
        #expect(events.first?.type == "run.queued")
        #expect(events.last?.type == "run.succeeded")

        let parked = try await gw.run("deploy", ["version": "2.0"], sync: false)
        let id = try #require(parked["id"]?.stringValue)
        _ = try await gw.waitForStatus(id, ["waiting"])
        // Stopped while the run waits: nothing of it is in this gateway's state dir.
        #expect(await gw.stop() == 0)
        #expect(!FileManager.default.fileExists(atPath: gw.stateDir + "/skelm.db"))
        try await gw.start()
        let approval = try #require(try await gw.get("/approvals?run=\(id)").json?["approvals"].list.first)
        let aid = try #require(approval["id"]?.stringValue)
        #expect(try await gw.post("/approvals/\(aid)/approve", ["reason": "ship it"]).status == 200)
        let done = try await gw.waitForStatus(id, ["succeeded", "failed"])
        #expect(done["status"] == "succeeded", "\(done)")
        let steps = try #require(try await gw.get("/runs/\(id)").json?["steps"].list)
        let shipped = steps.contains { step in "\(step)".contains("shipped by") }
        #expect(shipped, "\(steps)")
        let runs = try #require(try await gw.get("/runs?limit=100").json?["runs"].list)
        #expect(Set(runs.compactMap { $0["id"]?.stringValue }) == [helloId, id])
        let overview = try #require(try await gw.get("/v1/dashboard/overview").json)
        #expect(overview["totals"]?["succeeded"] == 2)
    }

    @Test("skelm store migrate moves a stopped gateway's SQLite store into PostgreSQL: finished runs, a pending approval, counts checked")
    func migrateFromSQLite() async throws {
        let url = try await PostgresCluster.shared.database()
        let gw = try await TestGateway.started(workflows: Self.workflows)
        defer { gw.cleanupLater() }
        let hello = try #require(try await gw.run("hello", ["name": "lite"])["id"]?.stringValue)
        let parked = try #require(try await gw.run("deploy", ["version": "3"], sync: false)["id"]?.stringValue)
        _ = try await gw.waitForStatus(parked, ["waiting"])

        // Not while the gateway holds the state dir.
        let busy = try await gw.cli(["store", "migrate", "--to", url])
        #expect(busy.status == 1 && (busy.stderr + busy.stdout).contains("another gateway"), "\(busy)")
        #expect(await gw.stop() == 0)
        let moved = try await gw.cli(["store", "migrate", "--to", url])
        #expect(moved.status == 0, "\(moved)")
        #expect(moved.stderr.contains("runs: 2") && moved.stdout.contains("next: set storage.driver: postgres"), "\(moved)")
        // A second copy into the now filled database is refused, naming what it holds.
        let again = try await gw.cli(["store", "migrate", "--to", url])
        #expect(again.status == 1 && (again.stderr + again.stdout).contains("not empty (runs: 2"), "\(again)")

        let text = try String(contentsOfFile: gw.configPath, encoding: .utf8)
        try (text + "\nstorage: { driver: postgres, url: \"\(url)\" }\n").write(toFile: gw.configPath, atomically: true, encoding: .utf8)
        try await gw.start()
        #expect(try await gw.get("/runs/\(hello)").json?["status"] == "succeeded")
        let approval = try #require(try await gw.get("/approvals?run=\(parked)").json?["approvals"].list.first)
        let aid = try #require(approval["id"]?.stringValue)
        #expect(try await gw.post("/approvals/\(aid)/approve", ["reason": "after the move"]).status == 200)
        let done = try await gw.waitForStatus(parked, ["succeeded", "failed"])
        #expect(done["status"] == "succeeded", "\(done)")
        // Its events continue the numbering the SQLite store began.
        let (events, _) = try await gw.events(parked)
        let seqs = events.compactMap { $0.id.flatMap(Int.init) }
        #expect(seqs == Array(1...seqs.count) && events.last?.type == "run.succeeded")
    }

    @Test("the database lost mid-run: the run waits and goes on when it is back, every step once; a new run asked for meanwhile gets 503")
    func databaseLostMidRun() async throws {
        let url = try await PostgresCluster.shared.database()
        let name = Self.databaseName(url)
        let gw = try await TestGateway.started(workflows: Self.workflows, config: Self.config(url: url))
        defer { gw.cleanupLater() }
        let run = try await gw.run("steady", [:], sync: false)
        let id = try #require(run["id"]?.stringValue)
        for _ in 0..<200 {
            let steps = try await gw.get("/runs/\(id)").json?["steps"].list ?? []
            if steps.contains(where: { $0["path"] == "a" && $0["status"] == "succeeded" }) { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        // Gone: every session of the database ended, and no new one let in.
        try await Self.cutOff(name)
        let refused = try await gw.post("/runs", ["workflow": "hello", "input": ["name": "x"]])
        #expect(refused.status == 503 && refused.json?["error"]?["code"] == "unavailable", "\(refused.status) \(refused.errorMessage)\n\(gw.logText.suffix(3000))")
        #expect(refused.header("Retry-After") == "5", "\(refused.headers)")
        // Away for longer than a lease (10 s): the gateway's own lease lapses under its run.
        try await Task.sleep(for: .seconds(12))
        try await PostgresCluster.shared.execute("ALTER DATABASE \(name) ALLOW_CONNECTIONS true", database: "postgres")
        let done = try await gw.waitForStatus(id, ["succeeded", "failed", "cancelled"], timeout: .seconds(60))
        #expect(done["status"] == "succeeded", "\(done)\n\(gw.logText.suffix(3000))")
        let (events, _) = try await gw.events(id)
        #expect(events.compactMap(\.id) == (1...events.count).map { "\($0)" })
        #expect(events.filter { $0.type == "step.finished" }.compactMap { $0.json?["step"]?.stringValue } == ["a", "b", "c"])
        #expect(events.filter { $0.type == "step.started" }.count == 3, "a step ran again: \(events.map(\.type))")
        #expect(gw.logText.contains("cannot be reached") && gw.logText.contains("reachable again"), "\(gw.logText.suffix(2000))")
    }

    @Test("an event the store refuses is never taken as done: the run goes on from its checkpoints; a step that may run again does, one that may not fails the run as Interrupted")
    func unstoredEvent() async throws {
        let url = try await PostgresCluster.shared.database()
        let name = Self.databaseName(url)
        let gw = try await TestGateway.started(workflows: Self.workflows, config: Self.config(url: url))
        defer { gw.cleanupLater() }
        // The database refuses the first end of a step called b it is given, once per workflow
        // (a sequence: what a failed transaction takes from one stays taken).
        try await PostgresCluster.shared.execute("""
            CREATE SEQUENCE refused_careful; CREATE SEQUENCE refused_steady;
            CREATE FUNCTION refuse_b() RETURNS trigger AS $$
            BEGIN
              IF NEW.type = 'step.finished' AND NEW.step = 'b' THEN
                IF (SELECT workflow FROM runs WHERE id = NEW.run_id) = 'careful' AND nextval('refused_careful') = 1
                   OR (SELECT workflow FROM runs WHERE id = NEW.run_id) = 'steady' AND nextval('refused_steady') = 1 THEN
                  RAISE EXCEPTION 'refused for the test';
                END IF;
              END IF;
              RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER refuse_b BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_b();
            """, database: name)
        // b may run again: it does, and the run succeeds with every step's end stored once.
        let careful = try await gw.run("careful", [:])
        #expect(careful["status"] == "succeeded", "\(careful)\n\(gw.logText.suffix(2000))")
        let id = try #require(careful["id"]?.stringValue)
        let (events, _) = try await gw.events(id)
        #expect(events.filter { $0.type == "step.finished" }.compactMap { $0.json?["step"]?.stringValue } == ["a", "b", "c"], "\(events.map(\.type))")
        #expect(events.filter { $0.type == "step.started" && $0.json?["step"] == "b" }.count == 2, "\(events.map(\.type))")
        #expect(events.contains { $0.type == "run.resumed" })
        #expect(gw.logText.contains("cannot persist event"))
        // b may not run again: the run fails as Interrupted rather than report b done.
        let steady = try await gw.run("steady", [:])
        #expect(steady["status"] == "failed" && steady["error"]?["code"] == "Interrupted", "\(steady)")
        #expect(steady["error"]?["step"] == "b", "\(steady)")
    }

    @Test("a run whose end the store refused is not left running: the gateway finds it, resumes it from its checkpoints, and it ends with no step run twice")
    func strandedRunResumed() async throws {
        let url = try await PostgresCluster.shared.database()
        let name = Self.databaseName(url)
        let gw = try await TestGateway.started(workflows: Self.workflows, config: Self.config(url: url))
        defer { gw.cleanupLater() }
        // The database refuses the first end of a run it is given.
        try await Self.refuseUpdateOfRuns(database: name, named: "refuse_end", when: "OLD.status = 'running' AND NEW.status = 'succeeded'", time: 1)
        // A run that is only slow is running across the sweeps too: it is left alone.
        let slow = try #require(try await gw.run("slow", [:], sync: false)["id"]?.stringValue)
        let run = try await gw.run("careful", [:], sync: false)
        let id = try #require(run["id"]?.stringValue)
        let done = try await gw.waitForStatus(id, ["succeeded", "failed", "cancelled"], timeout: .seconds(60))
        #expect(done["status"] == "succeeded", "\(done)\n\(gw.logText.suffix(3000))")
        #expect(gw.logText.contains("cannot record the end of a run"), "\(gw.logText.suffix(2000))")
        #expect(gw.logText.contains("queuing again a run nothing here was running or had queued"), "\(gw.logText.suffix(2000))")
        let (events, _) = try await gw.events(id)
        #expect(events.filter { $0.type == "step.started" }.count == 3, "a step ran again: \(events.map(\.type))")
        #expect(events.filter { $0.type == "run.resumed" }.count == 1, "\(events.map(\.type))")
        #expect(events.last?.type == "run.succeeded", "\(events.map(\.type))")
        let slowDone = try await gw.waitForStatus(slow, ["succeeded", "failed", "cancelled"], timeout: .seconds(60))
        #expect(slowDone["status"] == "succeeded" && slowDone["segments"] == 1, "\(slowDone)")
    }

    @Test("a queued run whose start the store refused is not left queued: the gateway finds it and starts it, once")
    func strandedQueuedRunStarted() async throws {
        let url = try await PostgresCluster.shared.database()
        let name = Self.databaseName(url)
        // One slot: the second run waits in the queue for the first.
        let config = TestGateway.config(server: "{ host: 127.0.0.1, port: 0, maxConcurrentRuns: 1 }")
            + "\nstorage: { driver: postgres, url: \"\(url)\", poolSize: 4 }\n"
        let gw = try await TestGateway.started(workflows: Self.workflows, config: config)
        defer { gw.cleanupLater() }
        // The database refuses the second start of a queued run it is given: the
        // first is the first run's (created already started), the second the queued one's.
        try await Self.refuseUpdateOfRuns(database: name, named: "refuse_start", when: "OLD.status = 'queued' AND NEW.status = 'running'", time: 2)
        let first = try #require(try await gw.run("steady", [:], sync: false)["id"]?.stringValue)
        let queued = try await gw.run("careful", [:], sync: false)
        #expect(queued["status"] == "queued", "\(queued)")
        let id = try #require(queued["id"]?.stringValue)
        let done = try await gw.waitForStatus(id, ["succeeded", "failed", "cancelled"], timeout: .seconds(60))
        #expect(done["status"] == "succeeded" && done["segments"] == 1, "\(done)\n\(gw.logText.suffix(3000))")
        #expect(gw.logText.contains("cannot start run"), "\(gw.logText.suffix(2000))")
        #expect(gw.logText.contains("queuing again a run nothing here was running or had queued"), "\(gw.logText.suffix(2000))")
        let (events, _) = try await gw.events(id)
        #expect(events.filter { $0.type == "run.started" }.count == 1, "\(events.map(\.type))")
        #expect(events.filter { $0.type == "step.started" }.count == 3, "\(events.map(\.type))")
        let firstDone = try await gw.waitForStatus(first, ["succeeded", "failed", "cancelled"], timeout: .seconds(30))
        #expect(firstDone["status"] == "succeeded", "\(firstDone)")
    }

    @Test("a gateway asked to stop while its database is away stops: its last audit entries give up rather than wait for the database")
    func stopWhileDatabaseAway() async throws {
        let url = try await PostgresCluster.shared.database()
        let name = Self.databaseName(url)
        let gw = try await TestGateway.started(workflows: Self.workflows, config: Self.config(url: url))
        defer { gw.cleanupLater() }
        #expect(try await gw.run("hello", ["name": "x"])["status"] == "succeeded")
        try await Self.cutOff(name)
        defer { Task { try? await PostgresCluster.shared.execute("ALTER DATABASE \(name) ALLOW_CONNECTIONS true", database: "postgres") } }
        let process = try #require(gw.process)
        kill(process.processIdentifier, SIGTERM)
        for _ in 0..<1200 where process.isRunning { try await Task.sleep(for: .milliseconds(100)) }
        #expect(!process.isRunning, "the gateway did not stop with its database away\n\(gw.logText.suffix(2000))")
        gw.process = nil
        #expect(gw.logText.contains("gateway stopped"), "\(gw.logText.suffix(2000))")
    }

    @Test("a database that cannot be reached stops the start: a clear error, a non-zero exit, no password shown")
    func unreachable() async throws {
        let port = PostgresCluster.freePort()
        let gw = try TestGateway(workflows: Self.workflows,
                                 config: Self.config(url: "postgres://skelm@127.0.0.1:\(port)/runs?sslmode=disable", storage: ", passwordEnv: PGPW"))
        gw.environment["PGPW"] = "s3cret-pw"
        defer { gw.cleanupLater() }
        await #expect(throws: GatewayFailure.self) { try await gw.start() }
        #expect(gw.process == nil || gw.process?.isRunning == false)
        let log = gw.logText
        #expect(log.contains("cannot reach PostgreSQL at postgres://skelm@127.0.0.1:\(port)/runs"), "\(log)")
        #expect(!log.contains("s3cret-pw"))
        if let p = gw.process { p.waitUntilExit(); #expect(p.terminationStatus != 0) }
    }

    @Test("a password written into storage.url is refused: the config is shown at GET /v1/config")
    func passwordInURL() async throws {
        let gw = try TestGateway(workflows: Self.workflows, config: Self.config(url: "postgres://skelm:hunter2@127.0.0.1:5432/runs"))
        defer { gw.cleanupLater() }
        await #expect(throws: GatewayFailure.self) { try await gw.start() }
        #expect(gw.logText.contains("storage.url") && gw.logText.contains("storage.passwordEnv"), "\(gw.logText)")
    }
}
