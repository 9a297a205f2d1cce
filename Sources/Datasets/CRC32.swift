import CZlib

/// zlib's CRC-32, accumulated over byte buffers.
public struct CRC32: Sendable {
  public private(set) var value: UInt32 = 0

  public init() {}

  /// This checksum extended by `bytes`.
  public func adding(_ bytes: UnsafeRawBufferPointer) -> CRC32 {
    var next = self
    next.value = UInt32(
      crc32_z(UInt(value), bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count))
    return next
  }
}
