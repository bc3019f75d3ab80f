import NIOCore

/// Splits a byte stream into frames: a 4-byte big-endian length, then that many bytes.
///
/// Hand-written rather than nio-extras' `LengthFieldBasedFrameDecoder` because that
/// one only caps frames at `Int32.max`; here the declared length is checked against
/// `maxFrameSize` the moment the header arrives, before a byte of payload is buffered.
public struct FrameDecoder: ByteToMessageDecoder, Sendable {
    public typealias InboundOut = ByteBuffer

    public let maxFrameSize: Int

    public init(maxFrameSize: Int = WireLimits.defaultMaxFrameSize) {
        self.maxFrameSize = maxFrameSize
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self) else {
            return .needMoreData
        }
        guard Int(length) <= maxFrameSize else {
            throw WireError.frameTooLarge(declared: Int(length), limit: maxFrameSize)
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        context.fireChannelRead(Self.wrapInboundOut(buffer.readSlice(length: Int(length))!))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > 0 {
            let pending = buffer.readableBytes
            buffer.moveReaderIndex(forwardBy: pending)
            throw WireError.truncatedFrame(bufferedBytes: pending)
        }
        return .needMoreData
    }
}

/// Limits that both sides of the wire enforce.
public enum WireLimits {
    /// 16 MiB: larger than any step result we send (outputs are capped well below),
    /// small enough that a hostile peer cannot make us hold much.
    public static let defaultMaxFrameSize = 16 * 1024 * 1024
}

/// Failures of the transport itself; each one closes the connection.
public enum WireError: Error, Equatable, CustomStringConvertible {
    case frameTooLarge(declared: Int, limit: Int)
    case truncatedFrame(bufferedBytes: Int)
    case connectionClosed
    case tooManyPendingRequests(limit: Int)

    public var description: String {
        switch self {
        case let .frameTooLarge(declared, limit): "frame of \(declared) bytes exceeds the \(limit)-byte limit"
        case let .truncatedFrame(n): "connection closed inside a frame (\(n) bytes buffered)"
        case .connectionClosed: "connection closed"
        case let .tooManyPendingRequests(limit): "peer exceeded \(limit) concurrent requests"
        }
    }
}
