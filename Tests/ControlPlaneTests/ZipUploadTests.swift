@testable import ControlPlane
import Foundation
import Testing
import ZIPFoundation

/// Hostile uploads, built byte by byte: each is refused with a message naming
/// the rule, and leaves nothing behind in the state dir.
@Suite("Zip uploads")
struct ZipUploadTests {
    static let hello = "id: hello\nsteps:\n  - id: greet\n    exec: { argv: [echo, hi] }\n"

    /// A project with a state dir; `limits` small enough for a test to pass them.
    struct Project {
        let dir = "/tmp/skelm-zip-\(UUID().uuidString.prefix(8).lowercased())"
        var settings: RegistrationSettings

        init(limits: UploadLimits = UploadLimits(maxZipBytes: 64 << 10, maxUncompressedBytes: 64 << 10, maxEntries: 10)) {
            try? FileManager.default.createDirectory(atPath: dir + "/state", withIntermediateDirectories: true)
            settings = RegistrationSettings(projectRoot: dir, stateDir: dir + "/state", limits: limits)
        }

        /// What `registered/` holds besides nothing: a refusal must leave it empty.
        var leftovers: [String] { (try? FileManager.default.contentsOfDirectory(atPath: settings.registeredDir)) ?? [] }

        func refusal(_ zip: Data) -> RegistrationError? {
            do {
                let c = try RegistrationCandidate.upload(zip, settings)
                c.discard()
                return nil
            } catch { return error }
        }

        func remove() { try? FileManager.default.removeItem(atPath: dir) }
    }

    func expectRefused(_ zip: Data, _ project: Project = Project(), _ check: (RegistrationError) -> Bool,
                       sourceLocation: SourceLocation = #_sourceLocation) {
        defer { project.remove() }
        let error = project.refusal(zip)
        #expect(error.map(check) == true, "got \(String(describing: error))", sourceLocation: sourceLocation)
        #expect(project.leftovers.isEmpty, "left behind: \(project.leftovers)", sourceLocation: sourceLocation)
    }

    @Test("a zip of workflow files and directories is extracted and validated")
    func good() throws {
        let project = Project()
        defer { project.remove() }
        let zip = ZipBuilder([.directory("flows/"), .file("flows/hello.workflow.yaml", Self.hello),
                              .deflated("flows/bye.workflow.yml", Data(Self.hello.replacingOccurrences(of: "hello", with: "bye").utf8))]).data
        let c = try RegistrationCandidate.upload(zip, project.settings)
        #expect(Set(c.ids) == ["hello", "bye"])
        #expect(Set(c.workflows.map(\.file)) == ["flows/hello.workflow.yaml", "flows/bye.workflow.yml"])
        c.discard()
        #expect(project.leftovers.isEmpty)
    }

    @Test("zip slip: a '..' component is refused")
    func slip() {
        expectRefused(ZipBuilder([.file("../x.workflow.yaml", Self.hello)]).data) { $0 == .badSource("'../x.workflow.yaml' has a '..' component; entries must stay inside the zip's root") }
        expectRefused(ZipBuilder([.file("a/../../x.workflow.yaml", Self.hello)]).data) { "\($0)".contains("'..' component") }
    }

    @Test("an absolute path is refused")
    func absolute() {
        expectRefused(ZipBuilder([.file("/tmp/x.workflow.yaml", Self.hello)]).data) { "\($0)".contains("is an absolute path") }
    }

    @Test("a symlink entry is refused, whatever its name")
    func symlink() {
        expectRefused(ZipBuilder([.symlink("evil.workflow.yaml", target: "/etc/shadow")]).data) {
            if case .badSource = $0 { "\($0)".contains("is a symbolic link") } else { false }
        }
    }

    @Test("a device file entry is refused")
    func device() {
        expectRefused(ZipBuilder([.entry("tty.workflow.yaml", Data(), mode: 0o020644)]).data) { "\($0)".contains("is a character device") }
    }

    @Test("a file that is not a workflow file is refused")
    func extensionRefused() {
        expectRefused(ZipBuilder([.file("a.workflow.yaml", Self.hello), .file("run.sh", "rm -rf /")]).data) {
            "\($0)".contains("'run.sh' is not a workflow file")
        }
    }

    @Test("more entries than maxEntries are refused from the central directory")
    func tooMany() {
        let items = (0..<11).map { ZipBuilder.Item.file("w\($0).workflow.yaml", Self.hello) }
        expectRefused(ZipBuilder(items).data) { $0 == .tooLarge("the zip has 11 entries; workflows.upload.maxEntries allows 10") }
    }

    @Test("a bomb that declares its size is refused before anything is written")
    func honestBomb() {
        let bomb = ZipBuilder([.deflated("bomb.workflow.yaml", Data(count: 1 << 20))]).data
        #expect(bomb.count < 8 << 10)
        expectRefused(bomb) { if case .tooLarge = $0 { "\($0)".contains("declare 1048576 bytes uncompressed") } else { false } }
    }

    @Test("a bomb whose central directory lies about its size is stopped while inflating")
    func lyingBomb() {
        let bomb = ZipBuilder([.deflated("bomb.workflow.yaml", Data(count: 1 << 20), declaring: 100)]).data
        expectRefused(bomb) { if case .tooLarge = $0 { "\($0)".contains("inflates past the cap") } else { false } }
    }

    @Test("a header that understates a small file is refused too")
    func lyingSmall() {
        let zip = ZipBuilder([.deflated("a.workflow.yaml", Data(Self.hello.utf8), declaring: 10)]).data
        expectRefused(zip) { "\($0)".contains("declares 10 bytes but holds \(Self.hello.utf8.count)") }
    }

    @Test("a zip over maxZipKB is refused")
    func zipTooLarge() {
        let big = ZipBuilder([.file("a.workflow.yaml", Self.hello + "# " + String(repeating: "x", count: 70 << 10) + "\n")]).data
        expectRefused(big) { if case .tooLarge = $0 { "\($0)".contains("maxZipKB") } else { false } }
    }

    @Test("an invalid workflow is 422 with its issues named by the zip's path")
    func invalid() {
        expectRefused(ZipBuilder([.file("dir/bad.workflow.yaml", "id: bad\nsteps: []\n")]).data) {
            if case let .invalid(issues) = $0 { issues.first?.file == "dir/bad.workflow.yaml" } else { false }
        }
    }

    @Test("not a zip, and an empty zip, are refused")
    func notZip() {
        expectRefused(Data("hello".utf8)) { "\($0)".contains("not a zip file") }
        expectRefused(ZipBuilder([.directory("empty/")]).data) { "\($0)".contains("no workflow files") }
    }

    @Test("a refused upload through the registry leaves no record and no tree; a good one leaves both")
    func registry() async throws {
        let project = Project()
        defer { project.remove() }
        let registry = WorkflowRegistry(dirs: [], registration: project.settings)
        await registry.reload()
        let store = RegistrationStore(dir: project.settings.registeredDir)
        // A candidate that validates but loses (its id taken) is discarded too.
        let good = ZipBuilder([.file("hello.workflow.yaml", Self.hello)]).data
        _ = try await registry.register(try RegistrationCandidate.upload(good, project.settings), by: "test")
        let again = ZipBuilder([.file("x/hello.workflow.yaml", Self.hello)]).data
        await #expect(throws: RegistrationError.self) { try await registry.register(try RegistrationCandidate.upload(again, project.settings), by: "test") }
        #expect(project.refusal(ZipBuilder([.file("../x.workflow.yaml", Self.hello)]).data) != nil)
        #expect(try store.load().count == 1)
        #expect(project.leftovers.sorted() == [RegistrationCandidate.digest(good), "registrations.json"].sorted())
        // Unregistering removes the tree with the record.
        try await registry.unregister("hello", by: "test")
        #expect(try store.load().isEmpty)
        #expect(project.leftovers == ["registrations.json"])
    }

    @Test("paths: allowed dirs and the project root only, symlinks resolved, never the state dir")
    func paths() throws {
        let project = Project()
        defer { project.remove() }
        let outside = "/tmp/skelm-zip-outside-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: outside) }
        try Self.hello.write(toFile: outside + "/hello.workflow.yaml", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: project.dir + "/link", withDestinationPath: outside)
        #expect(throws: RegistrationError.self) { try RegistrationCandidate.path(outside + "/hello.workflow.yaml", project.settings) }
        #expect(throws: RegistrationError.self) { try RegistrationCandidate.path("link/hello.workflow.yaml", project.settings) }
        try Self.hello.write(toFile: project.dir + "/state/hello.workflow.yaml", atomically: true, encoding: .utf8)
        #expect(throws: RegistrationError.self) { try RegistrationCandidate.path("state/hello.workflow.yaml", project.settings) }
        var allowed = project.settings
        allowed.allowedDirs = [outside]
        #expect(try RegistrationCandidate.path("link/hello.workflow.yaml", allowed).ids == ["hello"])
    }
}

/// Writes zip archives by hand, so a test can make every field say what it wants.
struct ZipBuilder {
    struct Item {
        var name: String
        /// The bytes as stored (deflated when `method` is 8).
        var stored: Data
        var method: UInt16 = 0
        var crc: UInt32
        var declaredSize: UInt32
        var mode: UInt32

        static func entry(_ name: String, _ data: Data, mode: UInt32) -> Item {
            Item(name: name, stored: data, crc: data.crc32(checksum: 0), declaredSize: UInt32(data.count), mode: mode)
        }
        static func file(_ name: String, _ text: String) -> Item { entry(name, Data(text.utf8), mode: 0o100644) }
        static func directory(_ name: String) -> Item { entry(name, Data(), mode: 0o040755) }
        static func symlink(_ name: String, target: String) -> Item { entry(name, Data(target.utf8), mode: 0o120777) }

        /// Deflated; `declaring` overrides the uncompressed size the headers state.
        static func deflated(_ name: String, _ data: Data, declaring: UInt32? = nil) -> Item {
            var out = Data()
            let crc = try! Data.compress(size: Int64(data.count), bufferSize: 16 << 10, provider: { position, size in
                data.subdata(in: Int(position)..<Int(position) + size)
            }, consumer: { out.append($0) })
            return Item(name: name, stored: out, method: 8, crc: crc, declaredSize: declaring ?? UInt32(data.count), mode: 0o100644)
        }
    }

    let data: Data

    init(_ items: [Item]) {
        var body = Data(), directory = Data()
        for item in items {
            let name = Data(item.name.utf8)
            let offset = UInt32(body.count)
            body.le32(0x0403_4b50); body.le16(20); body.le16(1 << 11); body.le16(item.method); body.le16(0); body.le16(0x21)
            body.le32(item.crc); body.le32(UInt32(item.stored.count)); body.le32(item.declaredSize)
            body.le16(UInt16(name.count)); body.le16(0)
            body.append(name); body.append(item.stored)
            directory.le32(0x0201_4b50); directory.le16(0x0314); directory.le16(20); directory.le16(1 << 11); directory.le16(item.method)
            directory.le16(0); directory.le16(0x21); directory.le32(item.crc); directory.le32(UInt32(item.stored.count))
            directory.le32(item.declaredSize); directory.le16(UInt16(name.count)); directory.le16(0); directory.le16(0)
            directory.le16(0); directory.le16(0); directory.le32(item.mode << 16); directory.le32(offset)
            directory.append(name)
        }
        var end = Data()
        end.le32(0x0605_4b50); end.le16(0); end.le16(0); end.le16(UInt16(items.count)); end.le16(UInt16(items.count))
        end.le32(UInt32(directory.count)); end.le32(UInt32(body.count)); end.le16(0)
        data = body + directory + end
    }
}

private extension Data {
    mutating func le16(_ v: UInt16) { append(contentsOf: [UInt8(v & 0xFF), UInt8(v >> 8)]) }
    mutating func le32(_ v: UInt32) { le16(UInt16(v & 0xFFFF)); le16(UInt16(v >> 16)) }
}
