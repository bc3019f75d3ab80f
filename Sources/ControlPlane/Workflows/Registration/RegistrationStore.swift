import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The registrations, in `stateDir/registered/registrations.json`, beside the
/// upload trees they name.
///
/// A JSON file rather than a table in skelm.db: registrations are a handful of
/// records, read whole at start and rewritten whole on each change by one
/// actor (the registry), so SQL buys nothing; keeping them in `registered/`
/// makes that directory the whole story of what was registered (back it up,
/// or remove it, as one); and the write (a new file, fsync, rename over the
/// old, fsync the directory) is as all-or-nothing as a transaction. The run
/// store stays about runs.
struct RegistrationStore: Sendable {
    let dir: String
    var file: String { dir + "/registrations.json" }
    static let stagingPrefix = ".staging-"

    private struct Document: Codable {
        var version = 1
        var registrations: [Registration]
    }

    /// Creates `registered/` (0700: only the gateway reads what was uploaded).
    func prepare() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        chmod(dir, 0o700)
    }

    /// No file yet: nothing registered.
    func load() throws -> [Registration] {
        guard let data = FileManager.default.contents(atPath: file) else {
            if FileManager.default.fileExists(atPath: file) { throw StoreError("cannot read \(file)") }
            return []
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        do { return try decoder.decode(Document.self, from: data).registrations } catch {
            throw StoreError("\(file) is not a registrations file: \(error)")
        }
    }

    func save(_ registrations: [Registration]) throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .millisecondsSince1970
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        let data = try encoder.encode(Document(registrations: registrations))
        do { try DurableFile.write(data, to: file) } catch {
            throw StoreError("\(error)")
        }
    }

    /// Removes what a crash could have left: staging directories, temporary
    /// files, and upload trees no registration names (extracted and renamed,
    /// but the record never committed).
    func sweep(keeping registrations: [Registration]) -> [String] {
        let named = Set(registrations.compactMap { r -> String? in
            if case let .upload(sha) = r.source { return sha }
            return nil
        })
        var removed: [String] = []
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where name != "registrations.json" && !named.contains(name) {
            let stale = name.hasPrefix(Self.stagingPrefix) || name.hasPrefix(".registrations.json-") || Self.isDigest(name)
            if stale, (try? FileManager.default.removeItem(atPath: dir + "/" + name)) != nil { removed.append(name) }
        }
        return removed
    }

    func uploadDir(_ sha256: String) -> String { dir + "/" + sha256 }

    static func isDigest(_ name: String) -> Bool {
        name.utf8.count == 64 && name.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    struct StoreError: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }
}
