import Foundation

/// A gateway's name in its fleet: `storage.gatewayId`, else one made at its
/// first start and kept in its state directory, so a restarted gateway is the
/// same member and resumes its own runs at once.
enum GatewayIdentity {
    static func valid(_ id: String) -> Bool {
        (1...64).contains(id.utf8.count) && id.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2E || c == 0x5F || c == 0x2D
        }
    }

    static func resolve(configured: String?, stateDir: String) throws -> String {
        if let configured { return configured }
        let file = stateDir + "/gateway-id"
        if let data = FileManager.default.contents(atPath: file) {
            let saved = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if valid(saved) { return saved }
        }
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "gateway"
        let cleaned = String(String.UnicodeScalarView(host.unicodeScalars.filter { valid(String($0)) }).prefix(40))
        let made = (cleaned.isEmpty ? "gateway" : cleaned) + "-" + String(UUID().uuidString.lowercased().prefix(8))
        try DurableFile.write(Data((made + "\n").utf8), to: file)
        return made
    }
}
