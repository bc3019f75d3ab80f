import ArgumentParser
import ControlPlane
import Foundation
import Logging
import Sandbox
import Wire

#if canImport(Glibc)
import Glibc
#endif

struct Doctor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what this host's kernel offers the sandbox, what config requires, and what a real worker gets.")

    @OptionGroup var options: ConfigOptions
    @Flag(help: "Machine-readable output.")
    var json = false

    func run() async throws {
        let loaded = try options.load()
        let host = HostSupport.probe()
        let required = loaded.config.requiredLayers(runningAsRoot: host.runningAsRoot)

        // A real worker, spawned and handshaken the way the gateway does it, but
        // accepted whatever it reports so we can show the report.
        // In a scratch state dir of its own: doctor never touches a live gateway's state.
        var logger = Logger(label: "skelm.doctor")
        logger.logLevel = .critical
        var report: SandboxReport?
        var workerError: String?
        do {
            let scratch = try ScratchGateway(loaded, logger: logger) {
                $0.workers.minSpare = 0
                $0.sandbox.require = []
            }
            let outcome = await scratch.gateway.pool.run(ExecSpec(argv: ["true"], timeoutMs: 10_000))
            report = outcome.sandbox
            workerError = outcome.result == nil ? outcome.failure : nil
            await scratch.finish()
        } catch {
            workerError = "\(error)"
        }

        let hostRows: [(String, String)] = [
            ("seccomp", host.seccomp ? "yes" : "no"),
            ("landlock", host.landlockABI > 0 ? "ABI \(host.landlockABI)" : "no"),
            ("user namespaces", host.userNamespaces ? "yes" : "no (\(host.notes["user"] ?? "?"))"),
            ("network namespaces", host.networkNamespaces ? "yes" : "no (\(host.notes["net"] ?? "?"))"),
            ("mount namespaces", host.mountNamespaces ? "yes" : "no (\(host.notes["mount"] ?? "?"))"),
            ("pid namespaces", host.pidNamespaces ? "yes" : "no (\(host.notes["pid"] ?? "?"))"),
            ("cgroup v2 delegation", host.cgroupV2Delegated ? "yes" : "no (\(host.cgroupNote))"),
            ("running as", host.runningAsRoot ? "root: workers get their own uids" : "uid \(getuid()): workers share it in a user namespace"),
        ]
        let missing = required.subtracting(report?.active ?? []).sorted()
        if json {
            struct Out: Encodable {
                let host: HostSupport
                let required: [String]
                let worker: SandboxReport?
                let workerError: String?
                let ok: Bool
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let out = Out(host: host, required: required.sorted().map(\.rawValue), worker: report, workerError: workerError,
                          ok: missing.isEmpty && report != nil)
            print(String(decoding: try encoder.encode(out), as: UTF8.self))
        } else {
            print("Host")
            for (k, v) in hostRows { print("  \(k.padding(toLength: 22, withPad: " ", startingAt: 0)) \(v)") }
            print("\nWorker sandbox (a real worker, spawned now)")
            if let workerError { print("  could not start a worker: \(workerError)") }
            for layer in SandboxLayer.allCases {
                let active = report?.has(layer) ?? false
                let need = required.contains(layer) ? "required" : "optional"
                let state = active ? "active" : "MISSING: \(report?.missing[layer.rawValue] ?? "no worker")"
                print("  \(layer.rawValue.padding(toLength: 13, withPad: " ", startingAt: 0)) \(need.padding(toLength: 9, withPad: " ", startingAt: 0)) \(state)")
            }
            print("")
            print(missing.isEmpty && report != nil
                ? "OK: every layer config requires is active."
                : "NOT OK: workers would be refused; missing \(missing.map(\.rawValue).joined(separator: ", ")).")
        }
        if !missing.isEmpty || report == nil { throw ExitCode(1) }
    }
}
