/// One Protocol Buffers message in the wire format, written field by field: varints (wire
/// type 0), fixed 32-bit floats (5) and length-delimited bytes, strings, packed arrays and
/// nested messages (2). Enough to write an ONNX model; nothing here reads one.
struct ProtobufMessage {
  private(set) var bytes: [UInt8] = []

  private mutating func key(_ field: Int, _ wireType: UInt64) {
    appendVarint(UInt64(field) << 3 | wireType)
  }

  private mutating func appendVarint(_ value: UInt64) {
    var v = value
    while v >= 0x80 {
      bytes.append(UInt8(v & 0x7F) | 0x80)
      v >>= 7
    }
    bytes.append(UInt8(v))
  }

  /// An int32, int64 or enum field (negative values take ten bytes, as the format says).
  mutating func int(_ field: Int, _ value: Int) {
    key(field, 0)
    appendVarint(UInt64(bitPattern: Int64(value)))
  }

  mutating func float(_ field: Int, _ value: Float) {
    key(field, 5)
    withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
  }

  mutating func bytes(_ field: Int, _ value: [UInt8]) {
    key(field, 2)
    appendVarint(UInt64(value.count))
    bytes.append(contentsOf: value)
  }

  mutating func string(_ field: Int, _ value: String) { bytes(field, Array(value.utf8)) }
  mutating func message(_ field: Int, _ value: ProtobufMessage) { bytes(field, value.bytes) }

  /// A repeated integer field, packed.
  mutating func ints(_ field: Int, _ values: [Int]) {
    var packed = ProtobufMessage()
    for v in values { packed.appendVarint(UInt64(bitPattern: Int64(v))) }
    bytes(field, packed.bytes)
  }
}
