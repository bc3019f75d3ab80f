import NIOCore
import NIOEmbedded
import Testing
@testable import Wire

@Suite("Frame codec")
struct FrameDecoderTests {
    func channel(max: Int = 1024) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxFrameSize: max)))
        return channel
    }

    func frame(_ payload: [UInt8], declared: UInt32? = nil) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeInteger(declared ?? UInt32(payload.count), endianness: .big)
        b.writeBytes(payload)
        return b
    }

    @Test("a frame split across reads is reassembled")
    func splitFrame() throws {
        let ch = try channel()
        let bytes = Array(frame(Array("hello".utf8)).readableBytesView)
        for byte in bytes { try ch.writeInbound(ByteBuffer(bytes: [byte])) }
        let out = try #require(try ch.readInbound(as: ByteBuffer.self))
        #expect(String(buffer: out) == "hello")
    }

    @Test("two frames in one read come out as two")
    func twoFrames() throws {
        let ch = try channel()
        var b = frame(Array("a".utf8))
        var second = frame(Array("bc".utf8))
        b.writeBuffer(&second)
        try ch.writeInbound(b)
        #expect(String(buffer: try #require(try ch.readInbound(as: ByteBuffer.self))) == "a")
        #expect(String(buffer: try #require(try ch.readInbound(as: ByteBuffer.self))) == "bc")
    }

    @Test("a zero-length frame is delivered as an empty frame")
    func zeroLength() throws {
        let ch = try channel()
        try ch.writeInbound(frame([]))
        #expect(try #require(try ch.readInbound(as: ByteBuffer.self)).readableBytes == 0)
    }

    @Test("a declared length of 4 GiB is refused from the header alone", arguments: [UInt32.max, 1025, 1 << 31])
    func oversized(declared: UInt32) throws {
        let ch = try channel(max: 1024)
        #expect(throws: WireError.frameTooLarge(declared: Int(declared), limit: 1024)) {
            try ch.writeInbound(frame([1, 2, 3], declared: declared))
        }
    }

    @Test("a frame exactly at the limit is accepted")
    func atLimit() throws {
        let ch = try channel(max: 8)
        try ch.writeInbound(frame(Array(repeating: 65, count: 8)))
        #expect(try #require(try ch.readInbound(as: ByteBuffer.self)).readableBytes == 8)
    }

    @Test("a connection that ends inside a frame reports truncation")
    func truncated() throws {
        let ch = try channel()
        var b = ByteBuffer()
        b.writeInteger(UInt32(10), endianness: .big)
        b.writeBytes([1, 2, 3])
        try ch.writeInbound(b)
        #expect(throws: WireError.truncatedFrame(bufferedBytes: 7)) { try ch.finish() }
    }
}
