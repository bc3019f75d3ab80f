import ArgumentParser
import ControlPlane
import Dispatch
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

struct GatewayStart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Start the gateway in the foreground. Ctrl-C or SIGTERM drains and exits 0.")

    @OptionGroup var options: ConfigOptions
    @Flag(help: "Stay in the foreground (the only mode; use `gateway install` for a service).")
    var foreground = false
    @Option(help: "Seconds running jobs get to finish on shutdown.")
    var drainSeconds = 30

    func run() async throws {
        // Handlers first: a SIGTERM during start-up must drain, not kill.
        let termination = Signals.termination()
        let logger = Logger(label: "skelm.gateway")
        let loaded = try options.load()
        let gateway = try Gateway(loaded: loaded, logger: logger)
        do {
            try await gateway.start()
        } catch {
            await gateway.stop(drain: .seconds(0))
            FileHandle.standardError.write(Data("skelm: cannot start: \(error)\n".utf8))
            throw ExitCode(1)
        }
        // SIGHUP reloads; SIGINT/SIGTERM drain and stop.
        let hangups = Signals.hangup()
        let reloader = Task { for await _ in hangups { await gateway.reload() } }
        for await _ in termination { break }
        reloader.cancel()
        logger.info("draining")
        await gateway.stop(drain: .seconds(drainSeconds))
    }
}

/// SIGINT/SIGTERM as an awaitable event.
enum Signals {
    static func hangup() -> AsyncStream<Int32> {
        let (stream, cont) = AsyncStream<Int32>.makeStream()
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler { [source] in
            _ = source
            cont.yield(SIGHUP)
        }
        source.resume()
        return stream
    }

    static func termination() -> AsyncStream<Int32> {
        signal(SIGPIPE, SIG_IGN)
        let (stream, cont) = AsyncStream<Int32>.makeStream()
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            // The handler holds its source: it stays armed for the life of the process.
            source.setEventHandler { [source] in
                _ = source
                cont.yield(sig)
            }
            source.resume()
        }
        return stream
    }
}
