import ArgumentParser
import Foundation
import SkelmClient
import Workflow

#if canImport(Glibc)
import Glibc
#endif

// `skelm-bench` (`--help` lists its options): starts a real gateway on a scratch
// project, drives it over HTTP the way a client would, and prints a table.
// Numbers come from the client's side (trigger to result in hand), except the
// spawn latency, which the gateway measures from spawn to handshake.

/// What to measure. Parsed before anything starts: a mistyped flag (or `--help`)
/// must not start a twelve-minute run.
struct BenchOptions: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "skelm-bench",
        abstract: "Starts a real gateway on a scratch project, drives it over HTTP, and prints a table.",
        discussion: "With no --only, the whole benchmark: about twelve minutes on two cores (about one with --quick).")

    enum Only: String, ExpressibleByArgument, CaseIterable {
        case runs, latency, storeAtScale = "store-at-scale", longRunning = "long-running", triggers, scaling, fleet, floor
    }
    enum Durability: String, ExpressibleByArgument, CaseIterable { case full, normal }

    @Flag(help: "A smoke run of about a minute instead of about twelve.")
    var quick = false
    @Option(help: "The skelm binary to measure (default: the one beside skelm-bench).")
    var skelm: String?
    @Option(help: "storage.durability of the measured gateway.")
    var durability: Durability = .full
    @Option(help: "Only this part of the benchmark.")
    var only: Only?
    @Option(help: "The Python (with temporalio, celery, redis, dbos) that runs the peers' workload; without it, no peers.")
    var peers: String?
}
let options = BenchOptions.parseOrExit()
let quick = options.quick
let durability = options.durability.rawValue
let skelm = options.skelm
    ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("skelm").path

struct Stats {
    var samples: [Double]
    func pct(_ p: Double) -> Double {
        let s = samples.sorted()
        return s.isEmpty ? 0 : s[min(s.count - 1, Int(Double(s.count) * p))]
    }
}

func elapsedMs(since start: ContinuousClock.Instant) -> Double {
    let (s, a) = (ContinuousClock.now - start).components
    return Double(s) * 1000 + Double(a) / 1e15
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("skelm-bench: \(message)\n".utf8))
    exit(1)
}

/// A scratch project: config, the `inc` workload and the `slow` workflow of the fan-out.
/// `storage`: a `storage:` mapping other than SQLite with the run's durability.
/// The benchmark's step: {x} in (as `$X`), {x+1} out. The floor runs the same script.
let incScript = #"echo "{\"x\": $(( $X + 1 ))}""#

func makeProject(_ dir: String, spawn: String, maxConcurrentRuns: Int = 32, storage: String? = nil) throws {
    try FileManager.default.createDirectory(atPath: dir + "/workflows", withIntermediateDirectories: true)
    chmod(dir, 0o711)
    try """
        server: { host: 127.0.0.1, port: 0, maxConcurrentRuns: \(maxConcurrentRuns) }
        workers: { minSpare: 8, max: \(maxConcurrentRuns + 8), spawn: \(spawn) }
        storage: \(storage ?? "{ durability: \(durability) }")
        defaults: { permissions: { allowedExecutables: [sh, sleep] } }
        stateDir: state
        """.write(toFile: dir + "/skelm.config.yaml", atomically: true, encoding: .utf8)
    // The workload of the benchmark issue: {x} in, {x+1} out, from a script step.
    try """
        id: inc
        input: { type: object, properties: { x: { type: integer } }, required: [x] }
        steps:
          - id: add
            exec:
              argv: [sh, -c, '\(incScript)']
              env: { X: "${{ input.x }}" }
        result: ${{ steps.add.output }}
        """.write(toFile: dir + "/workflows/inc.workflow.yaml", atomically: true, encoding: .utf8)
    try """
        id: slow
        steps:
          - { id: nap, exec: { argv: [sleep, "2"] } }
        """.write(toFile: dir + "/workflows/slow.workflow.yaml", atomically: true, encoding: .utf8)
}

/// What an idle worker costs the host: RSS counts the binary's pages it shares
/// with the template and every sibling; these do not.
func workerMemoryRow(_ idle: [Int32]) -> (String, String, String) {
    let memory = Internals.averageMemoryKB(idle)
    return ("idle worker PSS, and its private pages", String(format: "%.1f MiB", memory.pss / 1024), String(format: "%.1f MiB private", memory.private / 1024))
}

/// Starts a real gateway on `dir` and waits for its discovery file.
func startGateway(_ dir: String) async throws -> (process: Process, client: GatewayClient, url: String) {
    let gateway = Process()
    gateway.executableURL = URL(fileURLWithPath: skelm)
    gateway.arguments = ["gateway", "start", "--config", dir + "/skelm.config.yaml"]
    gateway.standardError = FileHandle(forWritingAtPath: "/dev/null")
    try gateway.run()
    for _ in 0..<500 {
        if let data = FileManager.default.contents(atPath: dir + "/state/gateway.json"),
           let info = try? JSONDecoder().decode(Discovery.self, from: data) {
            return (gateway, try GatewayClient.parse(info.url), info.url)
        }
        try await Task.sleep(for: .milliseconds(20))
    }
    kill(gateway.processIdentifier, SIGTERM)
    fail("the gateway did not start")
}

func stopGateway(_ gateway: Process, _ dir: String) {
    kill(gateway.processIdentifier, SIGTERM)
    gateway.waitUntilExit()
    try? FileManager.default.removeItem(atPath: dir)
}

@Sendable func runOnce(_ client: GatewayClient, _ x: Int) async throws -> Double {
    let start = ContinuousClock.now
    let reply = try await client.post("/runs", json: ["workflow": "inc", "input": ["x": .number(Double(x))], "mode": "sync"])
    let ms = elapsedMs(since: start)
    guard reply.status == 200, reply.json?["output"]?["x"] == .number(Double(x + 1)) else {
        fail("run \(x) answered \(reply.status): \(String(decoding: reply.body, as: UTF8.self))")
    }
    return ms
}

/// `total` runs from `clients` concurrent clients; each run's latency.
func concurrentRuns(_ client: GatewayClient, total: Int, clients: Int) async throws -> [Double] {
    try await concurrentRuns([client], total: total, clients: clients)
}

/// The same, client c sending to gateway c mod n.
func concurrentRuns(_ gateways: [GatewayClient], total: Int, clients: Int) async throws -> [Double] {
    try await withThrowingTaskGroup(of: [Double].self) { group in
        for c in 0..<clients {
            let client = gateways[c % gateways.count]
            group.addTask {
                var mine: [Double] = []
                var i = c
                while i < total {
                    mine.append(try await runOnce(client, i))
                    i += clients
                }
                return mine
            }
        }
        var all: [Double] = []
        for try await mine in group { all += mine }
        return all
    }
}

/// Sequential runs, each from a client of its own (a new connection each, as
/// a one-shot `skelm run` makes).
func freshConnectionRuns(_ url: String, runs: Int) async throws -> Stats {
    var stats = Stats(samples: [])
    for i in 0..<runs { stats.samples.append(try await runOnce(try GatewayClient.parse(url), i)) }
    return stats
}

func num(_ v: JSONValue?) -> Double { if case let .number(n)? = v { n } else { 0 } }

func printTable(_ rows: [(String, String, String)]) {
    let w0 = max(rows.map(\.0.count).max() ?? 0, 6), w1 = max(rows.map(\.1.count).max() ?? 0, 6)
    func pad(_ s: String, _ w: Int) -> String { s.padding(toLength: w, withPad: " ", startingAt: 0) }
    print("skelm \(quick ? "quick " : "")benchmark, \(ProcessInfo.processInfo.activeProcessorCount) cores, workload: one sandboxed exec step {x} -> {x+1}")
    print(pad("measure", w0) + "  " + pad("value", w1) + "  tail")
    print(String(repeating: "-", count: w0) + "  " + String(repeating: "-", count: w1) + "  ------------")
    for r in rows { print(pad(r.0, w0) + "  " + pad(r.1, w1) + "  " + r.2) }
}

let scaleRuns = quick ? 20_000 : 200_000, scaleRequests = quick ? 100 : 200

func scaleRows(_ r: StoreAtScale.Result) -> [(String, String, String)] {
    let runs = r.runs.formatted(.number.grouping(.automatic).locale(Locale(identifier: "en_US")))
    return [
        ("store at scale: \(runs) runs written, one INSERT before the gateway starts", String(format: "%.2f s", r.fillSeconds), ""),
        ("store at scale: GET /runs?limit=50 (\(r.list.samples.count) requests)", String(format: "p50 %.2f ms", r.list.pct(0.5)),
         String(format: "p99 %.2f ms", r.list.pct(0.99))),
        ("store at scale: GET /v1/dashboard/overview (\(r.overview.samples.count) requests)", String(format: "p50 %.2f ms", r.overview.pct(0.5)),
         String(format: "p99 %.2f ms", r.overview.pct(0.99))),
    ]
}

// `--only floor`: the run's processes and sandbox without the gateway, alone.
let floorRuns = quick ? 300 : 1000
if options.only == .floor {
    printTable(Floor.rows(Floor.measure(iterations: floorRuns), runs: floorRuns))
    exit(0)
}

// `--only store-at-scale`: that measurement alone, without the run workloads.
if options.only == .storeAtScale {
    Task {
        do { printTable(scaleRows(try await StoreAtScale.measure(runs: scaleRuns, requests: scaleRequests))) } catch { fail("\(error)") }
        exit(0)
    }
    dispatchMain()
}

// `--only triggers`: cron slot delay and webhook deliveries, alone.
if options.only == .triggers {
    Task {
        do { printTable(TriggerBench.rows(try await TriggerBench.measure(seconds: quick ? 5 : 15, deliveries: quick ? 500 : 1000, clients: 32))) } catch { fail("\(error)") }
        exit(0)
    }
    dispatchMain()
}

// `--only scaling`: runs/s as clients and maxConcurrentRuns grow, and 10,000 queued runs.
if options.only == .scaling {
    Task {
        do {
            printTable(Scaling.rows(try await Scaling.concurrency(runsEach: quick ? 300 : 1000),
                                    queued: try await Scaling.queued(runs: quick ? 2_000 : 10_000)))
        } catch { fail("\(error)") }
        exit(0)
    }
    dispatchMain()
}

// `--only latency`: sequential sync runs alone: the skelm client (its kept-alive
// connection), a new connection each, and wrk's one keep-alive connection.
if options.only == .latency {
    Task {
        do {
            let project = "/tmp/skelm-bench-\(getpid())"
            try makeProject(project, spawn: "template")
            let (gateway, client, url) = try await startGateway(project)
            try await Task.sleep(for: .seconds(1))
            for i in 0..<20 { _ = try await runOnce(client, i) }
            let runs = quick ? 100 : 300
            var kept = Stats(samples: [])
            for i in 0..<runs { kept.samples.append(try await runOnce(client, i)) }
            let fresh = try await freshConnectionRuns(url, runs: runs)
            let wrk = Internals.wrkSequential(url, runs: runs)
            stopGateway(gateway, project)
            printTable([
                ("sync run latency, sequential, skelm client (\(runs) runs)", String(format: "p50 %.2f ms", kept.pct(0.5)), String(format: "p99 %.2f ms", kept.pct(0.99))),
                ("sync run latency, sequential, new connection each (\(runs) runs)", String(format: "p50 %.2f ms", fresh.pct(0.5)), String(format: "p99 %.2f ms", fresh.pct(0.99))),
                ("sync run latency, sequential, wrk keep-alive (\(wrk?.runs ?? 0) runs)", wrk.map { String(format: "p50 %.2f ms", $0.p50) } ?? "wrk not installed",
                 wrk.map { String(format: "p99 %.2f ms", $0.p99) } ?? ""),
            ])
        } catch { fail("\(error)") }
        exit(0)
    }
    dispatchMain()
}

// `--only fleet`: runs/s on one gateway with SQLite, one with PostgreSQL, and three sharing PostgreSQL.
if options.only == .fleet {
    Task {
        printTable(FleetBench.rows(try await FleetBench.measure(runs: quick ? 300 : 1000)))
        exit(0)
    }
    dispatchMain()
}

// `--only long-running`: memory over many runs and start time on a long audit log, alone.
if options.only == .longRunning {
    Task {
        do {
            let memory = try await LongRunning.memory(small: quick ? 1_000 : 2_000, large: quick ? 5_000 : 20_000)
            let fresh = try await LongRunning.startTime(auditEntries: 0).seconds
            let entries = quick ? 500_000 : 5_000_000
            printTable(LongRunning.rows(memory: memory, start: fresh, bigStart: try await LongRunning.startTime(auditEntries: entries), entries: entries))
        } catch { fail("\(error)") }
        exit(0)
    }
    dispatchMain()
}

let project = "/tmp/skelm-bench-\(getpid())"
try makeProject(project, spawn: "template")

Task {
    let (gateway, client, url) = try await startGateway(project)
    // Let the pool fill before measuring.
    try await Task.sleep(for: .seconds(1))

    for i in 0..<20 { _ = try await runOnce(client, i) }

    // Spawns during the sequential phase happen one at a time on an otherwise idle
    // host: that is the cold spawn cost. Under the throughput phase they queue.
    let spawnsBefore = Int(num(try await client.get("/v1/workers").json?["spawnMs"]?["total"]))
    let sequentialRuns = quick ? 50 : 200
    var sequential = Stats(samples: [])
    for i in 0..<sequentialRuns { sequential.samples.append(try await runOnce(client, i)) }
    let poolAfterSequential = try await client.get("/v1/workers?spawnsFrom=\(spawnsBefore)").json
    let fresh = try await freshConnectionRuns(url, runs: quick ? 50 : 200)
    let keepAlive = Internals.wrkSequential(url, runs: sequentialRuns)
    let coldSpawn = poolAfterSequential?["spawnMs"]
    let dispatch = poolAfterSequential?["dispatchMs"]

    let total = quick ? 500 : 2000, clients = 32
    let cpuBefore = Internals.busyJiffies()
    let splitBefore = Internals.cpuSnapshot(gateway: gateway.processIdentifier)
    let countsBefore = Internals.schedulerCounts()
    let faultsBefore = Internals.pageFaults()
    let started = ContinuousClock.now
    let latencies = try await concurrentRuns(client, total: total, clients: clients)
    let seconds = elapsedMs(since: started) / 1000
    let cpuPerRun = Double(Internals.busyJiffies() - cpuBefore) * 10 / Double(total)
    let countsAfter = Internals.schedulerCounts()
    let faultsPerRun = Double(Internals.pageFaults() - faultsBefore) / Double(total)
    // Workers still exiting are reaped a moment later: their CPU lands in the template's children then.
    try await Task.sleep(for: .milliseconds(500))
    let split = Internals.cpuSplit(from: splitBefore, to: Internals.cpuSnapshot(gateway: gateway.processIdentifier), runs: total)
    let throughput = Stats(samples: latencies)
    let runRows: [(String, String, String)] = [
        ("sync run latency, sequential, skelm client (\(sequentialRuns) runs)", String(format: "p50 %.2f ms", sequential.pct(0.5)), String(format: "p99 %.2f ms", sequential.pct(0.99))),
        ("sync run latency, sequential, new connection each (\(fresh.samples.count) runs)", String(format: "p50 %.2f ms", fresh.pct(0.5)), String(format: "p99 %.2f ms", fresh.pct(0.99))),
        ("sync run latency, sequential, one keep-alive connection (wrk, \(keepAlive?.runs ?? 0) runs)", keepAlive.map { String(format: "p50 %.2f ms", $0.p50) } ?? "wrk not installed",
         keepAlive.map { String(format: "p99 %.2f ms", $0.p99) } ?? ""),
        ("runs/s, \(clients) concurrent clients (\(total) runs)", String(format: "%.0f runs/s", Double(total) / seconds), String(format: "p99 %.2f ms", throughput.pct(0.99))),
        ("worker spawn to handshake, forked from the template (\(Int(num(coldSpawn?["count"]))) spawns)", String(format: "p50 %.2f ms", num(coldSpawn?["p50"])), String(format: "p99 %.2f ms", num(coldSpawn?["p99"]))),
        ("CPU per run at 32 clients (all processes, both cores)", String(format: "%.2f ms", cpuPerRun), ""),
        ("  of which: control plane, worker template", String(format: "%.2f ms", split.controlPlane), String(format: "%.2f ms", split.template)),
        ("  of which: workers and their steps, the rest (kernel threads, other)", String(format: "%.2f ms", split.workers),
         String(format: "%.2f ms", split.rest)),
        ("context switches per run at 32 clients, and threads and processes created", String(format: "%.0f", Double(countsAfter.switches - countsBefore.switches) / Double(total)),
         String(format: "%.1f created", Double(countsAfter.tasks - countsBefore.tasks) / Double(total))),
        ("page faults per run at 32 clients, machine-wide", String(format: "%.0f", faultsPerRun), ""),
        ("warm dispatch: job sent to the worker's first event", String(format: "p50 %.2f ms", num(dispatch?["p50"])), String(format: "p99 %.2f ms", num(dispatch?["p99"]))),
    ]
    // `--only runs`: the run figures alone (about a minute with `--quick`), for
    // comparing two builds by alternating them.
    if options.only == .runs {
        let idle = Internals.idleWorkerPids(try await client.get("/v1/workers").json)
        let rss = [("control plane RSS, idle after the load", String(format: "%.1f MiB", Internals.rssKB(gateway.processIdentifier) / 1024), ""),
                   ("idle worker RSS (\(idle.count) workers)", String(format: "%.1f MiB", Internals.averageRSSKB(idle) / 1024), ""),
                   workerMemoryRow(idle)]
        stopGateway(gateway, project)
        printTable(runRows + rss)
        exit(0)
    }

    var health = Stats(samples: [])
    for _ in 0..<(quick ? 200 : 1000) {
        let once = try GatewayClient.parse(url)
        let t = ContinuousClock.now
        _ = try await once.get("/health")
        health.samples.append(elapsedMs(since: t))
    }

    let workers = try await client.get("/v1/workers").json
    let idleWorkers = Internals.idleWorkerPids(workers)
    let workerRSS = Internals.averageRSSKB(idleWorkers)
    let workerMemory = workerMemoryRow(idleWorkers)
    let cpRSS = Internals.rssKB(gateway.processIdentifier)
    let fanout = try await Internals.sseFanout(client, subscribers: quick ? 100 : 500)
    let healthRate = Internals.wrk(url + "/health", seconds: quick ? 2 : 5)
    let audit = try await Internals.audit(appends: quick ? 5_000 : 20_000, verifyEntries: quick ? 100_000 : 1_000_000)
    stopGateway(gateway, project)

    // The same, with every worker exec'd instead of forked from the worker template.
    let execProject = project + "-exec"
    try makeProject(execProject, spawn: "exec")
    let exec = try await startGateway(execProject)
    try await Task.sleep(for: .seconds(1))
    for i in 0..<10 { _ = try await runOnce(exec.client, i) }
    let execSpawnsBefore = Int(num(try await exec.client.get("/v1/workers").json?["spawnMs"]?["total"]))
    var execSequential = Stats(samples: [])
    for i in 0..<50 { execSequential.samples.append(try await runOnce(exec.client, i)) }
    let execSpawn = try await exec.client.get("/v1/workers?spawnsFrom=\(execSpawnsBefore)").json?["spawnMs"]
    let execTotal = quick ? 200 : 500
    let execCPUBefore = Internals.busyJiffies()
    let execStarted = ContinuousClock.now
    _ = try await concurrentRuns(exec.client, total: execTotal, clients: clients)
    let execRate = Double(execTotal) / (elapsedMs(since: execStarted) / 1000)
    let execCPUPerRun = Double(Internals.busyJiffies() - execCPUBefore) * 10 / Double(execTotal)
    stopGateway(exec.process, execProject)

    let scale = try await StoreAtScale.measure(runs: scaleRuns, requests: scaleRequests)
    let memory = try await LongRunning.memory(small: quick ? 1_000 : 2_000, large: quick ? 5_000 : 20_000)
    let freshStart = try await LongRunning.startTime(auditEntries: 0).seconds
    let auditEntries = quick ? 500_000 : 5_000_000
    let bigStart = try await LongRunning.startTime(auditEntries: auditEntries)
    let triggers = try await TriggerBench.measure(seconds: quick ? 5 : 15, deliveries: quick ? 500 : 1000, clients: 32)
    let scaling = try await Scaling.concurrency(runsEach: quick ? 300 : 1000)
    let backlog = try await Scaling.queued(runs: quick ? 2_000 : 10_000)
    let fleet = try await FleetBench.measure(runs: quick ? 300 : 1000)
    let floor = Floor.measure(iterations: floorRuns)

    let rows: [(String, String, String)] = runRows + [
        ("workers exec'd (workers.spawn: exec): spawn to handshake", String(format: "p50 %.2f ms", num(execSpawn?["p50"])), String(format: "p99 %.2f ms", num(execSpawn?["p99"]))),
        ("workers exec'd: sync run latency, sequential (50 runs)", String(format: "p50 %.2f ms", execSequential.pct(0.5)), String(format: "p99 %.2f ms", execSequential.pct(0.99))),
        ("workers exec'd: runs/s, \(clients) clients (\(execTotal) runs)", String(format: "%.0f runs/s", execRate), String(format: "%.2f ms CPU/run", execCPUPerRun)),
        ("GET /health, sequential, new connection each", String(format: "p50 %.3f ms", health.pct(0.5)), String(format: "p99 %.3f ms", health.pct(0.99))),
        ("GET /health under wrk, 64 connections", healthRate.map { String(format: "%.0f req/s", $0) } ?? "wrk not installed", ""),
        ("SSE fan-out of the terminal event, \(fanout.samples.count) subscribers", String(format: "p50 %.2f ms", fanout.pct(0.5)), String(format: "p99 %.2f ms", fanout.pct(0.99))),
        ("audit appends, durable, 64 appenders", String(format: "%.0f /s", audit.appendsPerSec), ""),
        ("audit verify, \(quick ? "100,000" : "1,000,000") entries", String(format: "%.0f /s", audit.verifiedPerSec), ""),
        ("control plane RSS, idle after the load", String(format: "%.1f MiB", cpRSS / 1024), ""),
        ("idle worker RSS (\(idleWorkers.count) workers)", String(format: "%.1f MiB", workerRSS / 1024), ""),
        workerMemory,
    ]
    printTable(rows + Floor.rows(floor, runs: floorRuns) + scaleRows(scale) + LongRunning.rows(memory: memory, start: freshStart, bigStart: bigStart, entries: auditEntries)
               + TriggerBench.rows(triggers) + Scaling.rows(scaling, queued: backlog) + FleetBench.rows(fleet))

    // The same workload on the engines users would pick instead, on this machine, now.
    if let python = options.peers {
        let peers = Peers.run(python: python, quick: quick)
        let ours = (seq: sequential.pct(0.5), rate: Double(total) / seconds)
        print("")
        print("same workload on peers (ratio: skelm / peer; below 1 is faster for latency, above 1 is faster for runs/s)")
        let header = ["system", "seq p50", "seq p99", "runs/s", "p99 at 32 clients", "p50 ratio", "runs/s ratio", "version"]
        var table = [["skelm", String(format: "%.2f ms", ours.seq), String(format: "%.2f ms", sequential.pct(0.99)),
                      String(format: "%.0f", ours.rate), String(format: "%.1f ms", throughput.pct(0.99)), "1.00", "1.00",
                      "skelm (this build)"]]
        for p in peers {
            if let error = p.error { table.append([p.name, "-", "-", "-", "-", "-", "-", "failed: \(error)"]); continue }
            table.append([p.name, String(format: "%.2f ms", p.seqP50), String(format: "%.2f ms", p.seqP99), String(format: "%.0f", p.rate),
                          String(format: "%.1f ms", p.tputP99), String(format: "%.2f", ours.seq / p.seqP50),
                          String(format: "%.2f", ours.rate / p.rate), p.version])
        }
        Peers.printTable(header, table)
    }
    exit(0)
}
dispatchMain()
