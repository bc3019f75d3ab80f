import Crypto
import Foundation

/// Verifies a log line without decoding it, when it is byte for byte what the
/// writer produces: the canonical body with `,"entryHash":"<64 hex>"` in its
/// sorted place. Removing that field gives the exact bytes that were hashed.
/// The last occurrence is the entry's own: a string value cannot contain an
/// unescaped quote, and the fields after it (prevHash, runId, seq, timestamp)
/// hold no such key. In a chain several gateways share, `,"gateway":"<id>"`
/// sits between the two (ids hold no quote or backslash). A line this does not recognise is not an error here; the
/// verifier decodes it fully and names what is wrong.
enum FastLine {
    static let entryKey = Array(#","entryHash":""#.utf8)
    static let prevKey = Array(#","prevHash":""#.utf8)
    static let seqKey = Array(#","seq":"#.utf8)
    static let gatewayKey = Array(#","gateway":""#.utf8)

    /// Where `prevKey` should start after the entryHash field ending at `at`:
    /// past a gateway field when there is one; nil for one this does not read.
    static func afterGateway(_ b: UnsafeBufferPointer<UInt8>, _ at: Int) -> Int? {
        guard at + gatewayKey.count <= b.count else { return at }
        for k in 0..<gatewayKey.count where b[at + k] != gatewayKey[k] { return at }
        var i = at + gatewayKey.count
        while i < b.count, b[i] != UInt8(ascii: "\""), b[i] != UInt8(ascii: "\\") { i += 1 }
        guard i < b.count, b[i] == UInt8(ascii: "\"") else { return nil }
        return i + 1
    }

    /// The line's seq when it is canonical, hashes to its own entryHash and links
    /// to `prev` (64 lowercase hex bytes, updated to this entry's hash); nil
    /// otherwise, and then the caller decodes the line to say why.
    static func check(_ b: UnsafeBufferPointer<UInt8>, expectedSeq: Int, prev: inout [UInt8], scratch: inout [UInt8]) -> Bool {
        guard let e = lastIndex(of: entryKey, in: b) else { return false }
        let hashStart = e + entryKey.count
        let fieldEnd = hashStart + 64 + 1   // the 64 hex digits and the closing quote
        guard fieldEnd <= b.count, b[fieldEnd - 1] == UInt8(ascii: "\""), let prevField = afterGateway(b, fieldEnd) else { return false }
        let prevStart = prevField + prevKey.count
        guard prevStart + 65 <= b.count else { return false }
        for k in 0..<prevKey.count where b[prevField + k] != prevKey[k] { return false }
        for k in 0..<64 where b[prevStart + k] != prev[k] { return false }
        guard let s = lastIndex(of: seqKey, in: b) else { return false }
        var seq = 0, i = s + seqKey.count
        // At most 18 digits: an edited line's seq must not overflow (and trap) the parse.
        while i < b.count, b[i] >= 48, b[i] <= 57, i - (s + seqKey.count) < 18 { seq = seq * 10 + Int(b[i] - 48); i += 1 }
        guard i > s + seqKey.count, seq == expectedSeq else { return false }
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeBufferPointer(rebasing: b[0..<e]))
        scratch.append(contentsOf: UnsafeBufferPointer(rebasing: b[fieldEnd..<b.count]))
        let digest = SHA256.hash(data: scratch)
        var k = hashStart
        for byte in digest {
            guard b[k] == hexDigits[Int(byte >> 4)], b[k + 1] == hexDigits[Int(byte & 0x0f)] else { return false }
            k += 2
        }
        for k in 0..<64 { prev[k] = b[hashStart + k] }
        return true
    }

    /// A canonical line's seq and the prevHash it claims, read without checking
    /// anything: where a chunk of the log starts when it is verified on its own.
    static func claimed(_ b: UnsafeBufferPointer<UInt8>) -> (seq: Int, prev: [UInt8])? {
        guard let e = lastIndex(of: entryKey, in: b), e + entryKey.count + 65 <= b.count,
              let prevField = afterGateway(b, e + entryKey.count + 65) else { return nil }
        let prevStart = prevField + prevKey.count
        guard prevStart + 64 <= b.count, let s = lastIndex(of: seqKey, in: b) else { return nil }
        var seq = 0, i = s + seqKey.count
        // At most 18 digits: an edited line's seq must not overflow (and trap) the parse.
        while i < b.count, b[i] >= 48, b[i] <= 57, i - (s + seqKey.count) < 18 { seq = seq * 10 + Int(b[i] - 48); i += 1 }
        guard i > s + seqKey.count else { return nil }
        return (seq, Array(UnsafeBufferPointer(rebasing: b[prevStart..<(prevStart + 64)])))
    }

    static let hexDigits = Array("0123456789abcdef".utf8)

    static func lastIndex(of needle: [UInt8], in hay: UnsafeBufferPointer<UInt8>) -> Int? {
        guard hay.count >= needle.count else { return nil }
        var i = hay.count - needle.count
        while i >= 0 {
            if hay[i] == needle[0] {
                var j = 1
                while j < needle.count, hay[i + j] == needle[j] { j += 1 }
                if j == needle.count { return i }
            }
            i -= 1
        }
        return nil
    }
}
