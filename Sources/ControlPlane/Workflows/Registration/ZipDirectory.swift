import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A zip's central directory, read by hand before any entry is touched: how
/// many entries, their names, what kind each is (ZIPFoundation folds symlinks
/// it does not expect and device files into "file", so the mode bits are read
/// here) and the sizes they declare. Declared sizes are only a first filter;
/// the extractor counts what it actually writes.
struct ZipDirectory {
    enum Kind: Equatable {
        case file, directory, symlink
        /// A device, FIFO or socket (its `S_IFMT` name).
        case special(String)
    }

    struct Record: Equatable {
        let name: String
        let kind: Kind
        let flags: UInt16
        let method: UInt16
        let compressedSize: UInt32
        let uncompressedSize: UInt32
        var encrypted: Bool { flags & 1 != 0 }
    }

    let records: [Record]

    private static let endSignature: UInt32 = 0x0605_4b50
    private static let entrySignature: UInt32 = 0x0201_4b50
    private static let endSize = 22

    /// Reads the directory, refusing more than `maxEntries` entries before
    /// reading any of them, and anything ZIP64 (no cap here comes near 4 GiB).
    init(_ data: Data, maxEntries: Int) throws(RegistrationError) {
        let bytes = [UInt8](data)
        guard let end = Self.findEnd(bytes) else { throw .badSource("the upload is not a zip file (no end of central directory)") }
        let disk = bytes.u16(end + 4), cdDisk = bytes.u16(end + 6)
        let onDisk = bytes.u16(end + 8), total = bytes.u16(end + 10)
        let size = bytes.u32(end + 12), offset = bytes.u32(end + 16)
        if total == 0xFFFF || size == 0xFFFF_FFFF || offset == 0xFFFF_FFFF {
            throw .badSource("ZIP64 archives are not accepted")
        }
        guard disk == 0, cdDisk == 0, onDisk == total else { throw .badSource("multi-disk zip archives are not accepted") }
        guard Int(total) <= maxEntries else {
            throw .tooLarge("the zip has \(total) entries; workflows.upload.maxEntries allows \(maxEntries)")
        }
        guard Int(offset) + Int(size) <= end else { throw .badSource("the zip's central directory lies outside the file") }
        var records: [Record] = []
        var at = Int(offset)
        for _ in 0..<Int(total) {
            guard at + 46 <= end, bytes.u32(at) == Self.entrySignature else {
                throw .badSource("the zip's central directory is damaged (entry \(records.count + 1))")
            }
            let madeBy = bytes.u16(at + 4), flags = bytes.u16(at + 8), method = bytes.u16(at + 10)
            let compressed = bytes.u32(at + 20), uncompressed = bytes.u32(at + 24)
            let nameLength = Int(bytes.u16(at + 28)), extraLength = Int(bytes.u16(at + 30)), commentLength = Int(bytes.u16(at + 32))
            let external = bytes.u32(at + 38)
            guard at + 46 + nameLength + extraLength + commentLength <= end else {
                throw .badSource("the zip's central directory is damaged (entry \(records.count + 1))")
            }
            let raw = Array(bytes[(at + 46)..<(at + 46 + nameLength)])
            let name = try Self.name(raw, utf8Flag: flags & (1 << 11) != 0)
            records.append(Record(name: name, kind: Self.kind(name: name, madeBy: madeBy, external: external), flags: flags,
                                  method: method, compressedSize: compressed, uncompressedSize: uncompressed))
            at += 46 + nameLength + extraLength + commentLength
        }
        self.records = records
    }

    /// The end record is the last 22+ bytes; its comment (up to 64 KiB) may follow it.
    private static func findEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= endSize else { return nil }
        let lowest = max(0, bytes.count - endSize - 0xFFFF)
        var i = bytes.count - endSize
        while i >= lowest {
            if bytes.u32(i) == endSignature, i + endSize + Int(bytes.u16(i + 20)) == bytes.count { return i }
            i -= 1
        }
        return nil
    }

    /// UTF-8 when the entry says so, else ASCII only: CP437 (the other legal
    /// encoding) would let two readers disagree about a name.
    private static func name(_ raw: [UInt8], utf8Flag: Bool) throws(RegistrationError) -> String {
        if !utf8Flag, raw.contains(where: { $0 >= 0x80 }) {
            throw .badSource("an entry's name is neither marked UTF-8 nor ASCII")
        }
        guard let name = String(validating: raw, as: UTF8.self) else { throw .badSource("an entry's name is not valid UTF-8") }
        return name
    }

    /// The same reading as ZIPFoundation's `Entry.type` for what both know,
    /// plus the file types it does not (devices, FIFOs, sockets).
    private static func kind(name: String, madeBy: UInt16, external: UInt32) -> Kind {
        let named = name.hasSuffix("/")
        switch madeBy >> 8 {
        case 3, 19:   // Unix, macOS: st_mode in the high half
            switch mode_t(external >> 16) & S_IFMT {
            case S_IFREG: return .file
            case S_IFDIR: return .directory
            case S_IFLNK: return .symlink
            case S_IFCHR: return .special("character device")
            case S_IFBLK: return .special("block device")
            case S_IFIFO: return .special("FIFO")
            case S_IFSOCK: return .special("socket")
            default: return named ? .directory : .file
            }
        case 0:   // MS-DOS attributes: 0x10 is a directory
            return named || (external >> 4) == 0x01 ? .directory : .file
        default:
            return named ? .directory : .file
        }
    }
}

private extension [UInt8] {
    func u16(_ i: Int) -> UInt16 { UInt16(self[i]) | UInt16(self[i + 1]) << 8 }
    func u32(_ i: Int) -> UInt32 { UInt32(u16(i)) | UInt32(u16(i + 2)) << 16 }
}
