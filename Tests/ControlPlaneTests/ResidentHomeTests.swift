@testable import ControlPlane
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A resident peer's home is handed to each life's uid. A life that left links
/// in it (to a host file, to a host directory) must not get root to hand those
/// targets over too.
@Suite("Resident homes", .enabled(if: geteuid() == 0, "handing a home to a uid takes root"))
struct ResidentHomeTests {
    @Test("links planted in a home lead nowhere: the home's own files change owner, the link targets keep theirs")
    func plantedLinks() throws {
        let root = "/tmp/skelm-home-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let home = root + "/home", outside = root + "/outside"
        try FileManager.default.createDirectory(atPath: home + "/nested/deeper", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: outside + "/dir", withIntermediateDirectories: true)
        try "own".write(toFile: home + "/nested/deeper/file", atomically: true, encoding: .utf8)
        try "host".write(toFile: outside + "/secret", atomically: true, encoding: .utf8)
        try "host".write(toFile: outside + "/dir/inside", atomically: true, encoding: .utf8)
        // What a hostile life leaves: a link to a file, a link to a directory, and one mid-tree.
        try FileManager.default.createSymbolicLink(atPath: home + "/file-link", withDestinationPath: outside + "/secret")
        try FileManager.default.createSymbolicLink(atPath: home + "/dir-link", withDestinationPath: outside + "/dir")
        try FileManager.default.createSymbolicLink(atPath: home + "/nested/up", withDestinationPath: outside)

        let uid: UInt32 = 3_999_999_001
        ResidentPeers.chownTree(home, uid: uid)
        func owner(_ path: String, follow: Bool = true) -> UInt32 {
            var st = stat()
            _ = follow ? stat(path, &st) : lstat(path, &st)
            return st.st_uid
        }
        #expect(owner(home) == uid)
        #expect(owner(home + "/nested/deeper/file") == uid)
        #expect(owner(home + "/file-link", follow: false) == uid, "the link itself is the life's")
        for target in [outside, outside + "/secret", outside + "/dir", outside + "/dir/inside"] {
            #expect(owner(target) == 0, "\(target) was handed over through a link")
        }
        // And back to root between lives.
        ResidentPeers.chownTree(home, uid: 0)
        #expect(owner(home + "/nested/deeper/file") == 0)
    }
}
