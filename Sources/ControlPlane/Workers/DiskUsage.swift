import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// How much of the disk a job's directories take: blocks actually allocated
/// (a sparse file costs what it holds), and how many entries there are.
///
/// Hand-written on openat/fstatat/getdents (through readdir): Foundation's
/// enumerator stats every entry through URLs and is an order of magnitude
/// slower on the trees a job leaves, and the walk runs several times a second
/// while a job runs. It stops as soon as either budget is exceeded, so a job
/// that made millions of files costs one bounded walk, not millions of stats.
enum DiskUsage {
    struct Reading: Equatable {
        var bytes: UInt64 = 0
        var entries = 0
    }

    /// Walks `paths` (not following symlinks), giving up once `maxBytes` or
    /// `maxEntries` is passed; the reading then exceeds the budget that stopped it.
    static func measure(_ paths: [String], maxBytes: UInt64, maxEntries: Int) -> Reading {
        var r = Reading()
        for path in paths {
            let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { continue }
            walk(fd, &r, maxBytes: maxBytes, maxEntries: maxEntries, depth: 0)
            if r.bytes > maxBytes || r.entries > maxEntries { break }
        }
        return r
    }

    /// `fd` is consumed (closed by closedir).
    private static func walk(_ fd: Int32, _ r: inout Reading, maxBytes: UInt64, maxEntries: Int, depth: Int) {
        guard let dir = fdopendir(fd) else { close(fd); return }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            r.entries += 1
            var st = stat()
            guard fstatat(dirfd(dir), name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            r.bytes += UInt64(max(st.st_blocks, 0)) * 512
            if r.bytes > maxBytes || r.entries > maxEntries { return }
            // Deep trees cost entries like wide ones; the depth bound only keeps
            // descriptors (one per level) within the gateway's own limits.
            if st.st_mode & S_IFMT == S_IFDIR, depth < 256 {
                let child = openat(dirfd(dir), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if child >= 0 { walk(child, &r, maxBytes: maxBytes, maxEntries: maxEntries, depth: depth + 1) }
                if r.bytes > maxBytes || r.entries > maxEntries { return }
            }
        }
    }
}
