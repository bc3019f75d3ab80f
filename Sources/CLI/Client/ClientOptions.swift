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
            // A config that no longer validates must not keep the CLI from the
            // gateway still running on it (to reload it, or to see its status).
            if let path = config.path, (try? ConfigLoader.load(path: path)) == nil, let stateDir = ConfigLoader.stateDirOnly(path: path) {
                return try GatewayClient.resolve(explicit: nil, stateDir: stateDir)
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
        print(TextTable.render(header, rows.map { $0.map(safe) }))
    }

    /// Text from a run (a step's stderr, a message, a step name) made safe for
    /// the operator's terminal: control characters, DEL and C1 codes are shown
    /// as `\u{…}` instead of being sent, so a step cannot move the cursor,
    /// rewrite earlier lines, set the window title or answer a terminal query.
    /// Newlines and tabs pass.
    static func safe(_ text: String) -> String {
        var out = ""
        out.unicodeScalars.reserveCapacity(text.unicodeScalars.count)
        for u in text.unicodeScalars {
            switch u.value {
            case 0x0a, 0x09: out.unicodeScalars.append(u)
            case 0x00...0x1f, 0x7f...0x9f, 0x2028, 0x2029, 0x202a...0x202e, 0x2066...0x2069:
                out += "\\u{\(String(u.value, radix: 16))}"
            default: out.unicodeScalars.append(u)
            }
        }
        return out
    }
}
