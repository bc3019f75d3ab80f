import ArgumentParser
import ControlPlane
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

#if canImport(Glibc)
import Glibc
#endif

struct GatewayStart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Start the gateway (in the foreground unless --detach).",
        discussion: """
            SIGTERM or Ctrl-C drains: new runs get 503, running ones get server.drainTimeoutSeconds \
            to finish, what is left resumes at the next start; then it exits 0. SIGHUP reloads.
            Exit status: 0 after a clean stop, 1 when it cannot start, 2 for a bad config.
            """)

    @OptionGroup var options: ConfigOptions
    @Flag(help: "Run in the background: returns once the gateway answers, its output going to --log-file.")
    var detach = false
    @Option(help: "With --detach: where the gateway's log goes (default: <stateDir>/gateway.log).")
    var logFile: String?
    @Option(help: "Seconds running runs get to finish on shutdown (default: server.drainTimeoutSeconds).")
    var drainSeconds: Int?
    @Flag(help: "With --detach: print the started gateway's pid, URL and log file as JSON.")
    var json = false

    func validate() throws {
        if logFile != nil, !detach { throw ValidationError("--log-file goes with --detach") }
        if json, !detach { throw ValidationError("--json goes with --detach (the gateway's own log is text)") }
        if let d = drainSeconds, d < 0 { throw ValidationError("--drain-seconds must be 0 or more") }
    }

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        // Until the gateway listens for it, a SIGHUP (a reload sent too early, a
        // closed terminal) must not end the process.
        signal(SIGHUP, SIG_IGN)
        let loaded = try options.load()
        if detach { return try await Detach.start(loaded: loaded, logFile: logFile, json: json) }
        let logger = Logger(label: "skelm.gateway")
        let gateway: Gateway
        do { gateway = try Gateway(loaded: loaded, logger: logger) } catch {
            FileHandle.standardError.write(Data("skelm: cannot start: \(error)\n".utf8))
            throw ExitCode(error is ConfigError ? 2 : 1)
        }
        let service = GatewayService(gateway: gateway, drainOverride: drainSeconds.map { .seconds($0) }, logger: logger)
        // ServiceLifecycle owns SIGTERM and SIGINT: the first starts the drain and
        // later ones are ignored (SIGKILL stops it at once; runs resume at the next start).
        let group = ServiceGroup(configuration: .init(services: [.init(service: service)],
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do { try await group.run() } catch {
            FileHandle.standardError.write(Data("skelm: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// The gateway as a service of a ServiceGroup: starts it, reloads it on SIGHUP
/// and when its files change, and drains it on graceful shutdown.
struct GatewayService: Service {
    let gateway: Gateway
    /// `--drain-seconds`; otherwise `server.drainTimeoutSeconds` as it is when the drain starts.
    let drainOverride: Duration?
    let logger: Logger

    func run() async throws {
        // Trapped before start: a SIGHUP during start-up must not kill the process.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        do { try await gateway.start() } catch {
            await gateway.stop(drain: .seconds(0))
            throw StartFailure(error: error)
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in hangups { _ = await gateway.reload(actor: "gateway", trigger: .signal) }
            }
            group.addTask { await gateway.watchFiles() }
            // Returns when SIGTERM/SIGINT arrives (or the group is cancelled).
            try? await gracefulShutdown()
            group.cancelAll()
        }
        let drain = drainOverride ?? .seconds(gateway.running.server.drainTimeoutSeconds)
        logger.info("draining", metadata: ["seconds": "\(drain.components.seconds)"])
        await gateway.stop(drain: drain)
    }

    struct StartFailure: Error, CustomStringConvertible {
        let error: any Error
        var description: String { "cannot start: \(error)" }
    }
}
