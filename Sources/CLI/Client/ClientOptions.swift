import ArgumentParser
import ControlPlane
import Foundation
import SkelmClient

/// Options of every command that talks to a running gateway.
struct ClientOptions: ParsableArguments {
    @Option(name: .long, help: "Gateway URL (http://host:port or unix:///path). Default: $SKELM_GATEWAY_URL, else the running gateway's discovery file.")
    var gateway: String?
    @OptionGroup var config: ConfigOptions

    func client() throws -> GatewayClient {
        do {
            if gateway != nil || ProcessInfo.processInfo.environment["SKELM_GATEWAY_URL"] != nil {
                return try GatewayClient.resolve(explicit: gateway, stateDir: "")
            }
            return try GatewayClient.resolve(explicit: nil, stateDir: config.load().stateDir)
        } catch let failure as GatewayClient.Failure {
            throw CLIFailure(failure.description)
        }
    }
}

/// A failure the CLI reports in one line on stderr, with exit status 1.
struct CLIFailure: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

enum Output {
    static func printJSON(_ data: Data) {
        if let v = try? JSONSerialization.jsonObject(with: data),
           let pretty = try? JSONSerialization.data(withJSONObject: v, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]) {
            print(String(decoding: pretty, as: UTF8.self))
        } else {
            print(String(decoding: data, as: UTF8.self))
        }
    }

    static func fail(_ reply: GatewayClient.Reply) -> CLIFailure {
        CLIFailure("gateway answered \(reply.status): \(reply.errorMessage)")
    }

    /// Fixed-width columns, for list commands.
    static func table(_ header: [String], _ rows: [[String]]) {
        print(TextTable.render(header, rows))
    }
}
