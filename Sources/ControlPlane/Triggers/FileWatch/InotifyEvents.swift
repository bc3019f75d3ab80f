/// One record of what read(2) on an inotify descriptor returns.
///
/// The kernel packs `struct inotify_event { int wd; uint32_t mask; uint32_t
/// cookie; uint32_t len; char name[len]; }` back to back; `name` is padded with
/// NULs to `len`, and `len` is 0 for events about the watched directory itself.
struct InotifyEvent: Sendable, Equatable {
    /// The watch the event is for, or -1 (IN_Q_OVERFLOW).
    let wd: Int32
    let mask: UInt32
    /// Pairs an IN_MOVED_FROM with its IN_MOVED_TO; 0 for every other event.
    let cookie: UInt32
    /// The entry's name inside the watched directory, "" when the event is
    /// about the directory itself. Bytes that are not UTF-8 are replaced (U+FFFD).
    let name: String

    /// Whether any of `flags` (IN_* constants, as Glibc imports them) is set.
    func has(_ flags: Int32) -> Bool { mask & UInt32(bitPattern: flags) != 0 }

    /// The fixed part of every record.
    static let headerSize = 16

    /// Every whole record in the first `count` bytes of `buffer`. A record the
    /// buffer cuts short ends the list: the kernel never does that (read(2)
    /// fails with EINVAL rather than split one), so only a bad `count` could.
    static func parse(_ buffer: [UInt8], count: Int) -> [InotifyEvent] {
        let count = min(count, buffer.count)
        var events: [InotifyEvent] = []
        var offset = 0
        buffer.withUnsafeBytes { raw in
            while offset + headerSize <= count {
                let wd = raw.loadUnaligned(fromByteOffset: offset, as: Int32.self)
                let mask = raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
                let cookie = raw.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self)
                let len = Int(raw.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
                let end = offset + headerSize + len
                guard end <= count else { break }
                let name = raw[(offset + headerSize)..<end].prefix { $0 != 0 }
                events.append(InotifyEvent(wd: wd, mask: mask, cookie: cookie,
                                           name: String(decoding: name, as: UTF8.self)))
                offset = end
            }
        }
        return events
    }
}
