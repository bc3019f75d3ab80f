import ArgumentParser
import ControlPlane
import Foundation

struct StoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store", abstract: "The run store: move it from SQLite to PostgreSQL.",
        subcommands: [StoreMigrate.self])
}

struct StoreMigrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate", abstract: "Copy the state dir's SQLite store into an empty PostgreSQL database.",
        discussion: """
            The gateway must be stopped (the state dir's lock is taken for the copy). The target \
            database is migrated to this gateway's schema, must hold no rows, and is counted \
            table by table after the copy. The SQLite file is only read (after being brought to this \
            binary's schema). A copy that fails midway leaves the target partly filled: drop and \
            create it again before retrying. Then set \
            storage.driver: postgres and storage.url in the config, and start the gateway.
            Exit status: 0 copied, 1 refused or failed (the SQLite store unchanged).
            """)
    @Option(help: "The target: postgres://user@host:5432/database[?sslmode=…] (no password in it).") var to: String
    @Option(help: "Environment variable holding the database password.") var passwordEnv: String?
    @OptionGroup var config: ConfigOptions

    func run() async throws {
        let loaded = try config.load()
        let path = loaded.stateDir + "/skelm.db"
        guard FileManager.default.fileExists(atPath: path) else { throw CLIFailure("no SQLite store at \(path)") }
        let lock: StateLock, url: PostgresURL, source: RunStore, target: RunStore
        do {
            lock = try StateLock(stateDir: loaded.stateDir)
            url = try PostgresURL(to, password: passwordEnv.flatMap { ProcessInfo.processInfo.environment[$0] })
            source = try RunStore(path: path)
            target = try RunStore(postgres: url, poolSize: 2)
        } catch {
            throw CLIFailure("store migrate: \(error)")
        }
        defer { withExtendedLifetime(lock) {} }
        do {
            let counts = try await source.copy(into: target) { table, rows in
                FileHandle.standardError.write(Data("  \(table): \(rows)\n".utf8))
            }
            await target.close()
            await source.close()
            print("copied \(counts.reduce(0) { $0 + $1.rows }) rows from \(path) into \(url.redacted)")
            print("next: set storage.driver: postgres and storage.url: \(url.redacted) in the config, then start the gateway")
        } catch {
            await target.close()
            await source.close()
            throw CLIFailure("store migrate: \(error)")
        }
    }
}
