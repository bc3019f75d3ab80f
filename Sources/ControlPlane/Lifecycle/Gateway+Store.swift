import Foundation

extension Gateway {
    /// The run store the config names, opened and migrated: a store that cannot
    /// be opened (a PostgreSQL that cannot be reached, a schema from a newer
    /// gateway) stops the start with the reason, before anything runs.
    static func openStore(_ storage: GatewayConfig.Storage, stateDir: String, configFile: String?, member: String) throws -> RunStore {
        switch storage.driver {
        case .sqlite:
            let path = stateDir + "/skelm.db"
            do {
                return try RunStore(path: path, durability: storage.durability, member: member)
            } catch {
                throw ConfigError(file: path, line: nil, keyPath: "storage", message: "cannot open the run store: \(error)")
            }
        case .postgres:
            do {
                let url = try storage.postgresURL(environment: ProcessInfo.processInfo.environment)
                return try RunStore(postgres: url, poolSize: storage.poolSize, durability: storage.durability, member: member,
                                    statementTimeout: .seconds(storage.statementTimeoutSeconds))
            } catch {
                throw ConfigError(file: configFile ?? "config", line: nil, keyPath: "storage.url", message: "\(error)")
            }
        }
    }
}
