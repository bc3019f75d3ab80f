import Foundation
import ZIPFoundation

#if canImport(Glibc)
import Glibc
#endif

/// Unpacks an uploaded zip of workflows into a fresh directory, refusing
/// anything that could write outside it, fill the disk, or smuggle in more
/// than workflow files. Every cap is checked twice: against what the central
/// directory declares (cheap, before anything is written) and against the bytes
/// actually written (a header may lie; inflating is what is counted).
enum ZipExtractor {
    static let suffixes = WorkflowRegistry.suffixes

    /// Extracts `zip` into `dir`, which must not exist yet (it is created 0700).
    /// Returns the files written, relative to `dir`. On any refusal `dir` is removed.
    static func extract(_ zip: Data, into dir: String, limits: UploadLimits) throws(RegistrationError) -> [String] {
        guard zip.count <= limits.maxZipBytes else {
            throw .tooLarge("the zip is \(zip.count) bytes; workflows.upload.maxZipKB allows \(limits.maxZipBytes >> 10) KB")
        }
        let directory = try ZipDirectory(zip, maxEntries: limits.maxEntries)
        try check(directory.records, limits: limits)
        guard mkdir(dir, 0o700) == 0 else {
            throw .unavailable("cannot create \(dir): \(String(cString: strerror(errno)))")
        }
        do {
            return try write(zip, directory.records, into: dir, limits: limits)
        } catch {
            try? FileManager.default.removeItem(atPath: dir)
            throw error
        }
    }

    /// What the central directory says, judged before anything is written.
    static func check(_ records: [ZipDirectory.Record], limits: UploadLimits) throws(RegistrationError) {
        var seen = Set<String>()
        var declared = 0
        for r in records {
            try checkName(r.name)
            guard seen.insert(r.name.hasSuffix("/") ? String(r.name.dropLast()) : r.name).inserted else {
                throw .badSource("'\(r.name)' appears twice in the zip")
            }
            switch r.kind {
            case .symlink: throw .badSource("'\(r.name)' is a symbolic link; the zip may hold only workflow files and directories")
            case let .special(what): throw .badSource("'\(r.name)' is a \(what); the zip may hold only workflow files and directories")
            case .directory:
                guard r.name.hasSuffix("/") else { throw .badSource("'\(r.name)' is marked a directory but not named like one (no trailing /)") }
            case .file:
                guard !r.name.hasSuffix("/") else { throw .badSource("'\(r.name)' is named like a directory but marked a file") }
                guard suffixes.contains(where: { r.name.hasSuffix($0) }) else {
                    throw .badSource("'\(r.name)' is not a workflow file; the zip may hold only \(suffixes.joined(separator: ", ")) files and directories")
                }
                guard !r.encrypted else { throw .badSource("'\(r.name)' is encrypted") }
                guard r.method == 0 || r.method == 8 else { throw .badSource("'\(r.name)' uses compression method \(r.method); only stored and deflate are accepted") }
                declared += Int(r.uncompressedSize)
            }
        }
        guard declared <= limits.maxUncompressedBytes else {
            throw .tooLarge("the zip's files declare \(declared) bytes uncompressed; workflows.upload.maxUncompressedKB allows \(limits.maxUncompressedBytes >> 10) KB")
        }
        guard records.contains(where: { $0.kind == .file }) else { throw .badSource("the zip holds no workflow files") }
    }

    /// Relative, `/`-separated, no `.` or `..` components, nothing a shell or
    /// another OS would read differently.
    static func checkName(_ name: String) throws(RegistrationError) {
        guard !name.isEmpty else { throw .badSource("an entry has an empty name") }
        guard !name.hasPrefix("/") else { throw .badSource("'\(name)' is an absolute path; entries must be relative") }
        guard !name.contains("\\") else { throw .badSource("'\(name)' contains a backslash; use / between components") }
        guard !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw .badSource("an entry's name contains a control character")
        }
        let components = (name.hasSuffix("/") ? String(name.dropLast()) : name).split(separator: "/", omittingEmptySubsequences: false)
        for c in components {
            if c == ".." { throw .badSource("'\(name)' has a '..' component; entries must stay inside the zip's root") }
            if c == "." || c.isEmpty { throw .badSource("'\(name)' has an empty or '.' component") }
            if c.utf8.count > 255 { throw .badSource("'\(name)' has a component longer than 255 bytes") }
        }
    }

    private struct OverCap: Error {}

    /// Writes each entry, counting the bytes that actually come out of the
    /// inflater, and refusing the zip the moment they pass the cap.
    private static func write(_ data: Data, _ records: [ZipDirectory.Record], into dir: String,
                              limits: UploadLimits) throws(RegistrationError) -> [String] {
        let archive: Archive
        do { archive = try Archive(data: data, accessMode: .read) } catch {
            throw .badSource("the zip cannot be read: \(error)")
        }
        let entries = Array(archive)
        // Two readers of one directory must agree, or one of them is being fooled.
        guard entries.count == records.count,
              zip(entries, records).allSatisfy({ $0.path == $1.name && ($0.type == .directory) == ($1.kind == .directory) }) else {
            throw .badSource("the zip's entries do not match its central directory")
        }
        var total = 0
        var files: [String] = []
        for (entry, record) in zip(entries, records) {
            let target = dir + "/" + record.name
            if record.kind == .directory {
                try makeDirectories(target)
                continue
            }
            try makeDirectories((target as NSString).deletingLastPathComponent)
            let fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw .badSource("cannot write '\(record.name)': \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var written = 0
            let crc: CRC32
            do {
                crc = try archive.extract(entry, bufferSize: 16 << 10, skipCRC32: false) { chunk in
                    written += chunk.count
                    total += chunk.count
                    if total > limits.maxUncompressedBytes { throw OverCap() }
                    try writeAll(fd, chunk)
                }
            } catch is OverCap {
                throw .tooLarge("'\(record.name)' inflates past the cap (its header declared \(record.uncompressedSize) bytes): the files would take more than workflows.upload.maxUncompressedKB (\(limits.maxUncompressedBytes >> 10) KB)")
            } catch let error as RegistrationError {
                throw error
            } catch {
                throw .badSource("'\(record.name)' cannot be extracted: \(error)")
            }
            guard written == Int(record.uncompressedSize) else {
                throw .badSource("'\(record.name)' declares \(record.uncompressedSize) bytes but holds \(written)")
            }
            guard crc == entry.checksum else { throw .badSource("'\(record.name)' fails its CRC-32 check") }
            files.append(record.name)
        }
        return files
    }

    private static func writeAll(_ fd: Int32, _ chunk: Data) throws(RegistrationError) {
        let failed: Int32? = chunk.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { return errno }
                offset += n
            }
            return nil
        }
        if let failed { throw .unavailable("cannot write an extracted file: \(String(cString: strerror(failed)))") }
    }

    private static func makeDirectories(_ path: String) throws(RegistrationError) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw .badSource("cannot create directory for '\(path)': \(error)")
        }
    }
}
