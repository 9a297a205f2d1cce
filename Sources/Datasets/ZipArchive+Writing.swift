import CZlib

extension ZipArchive {
  /// A zip archive of `members` (name, content) in order, each stored or deflated, with a
  /// central directory — what `numpy.load` reads. Sizes past 4 GiB are not written.
  public static func encode(_ members: [(name: String, content: [UInt8])], compress: Bool)
    throws(DataError) -> [UInt8]
  {
    var out: [UInt8] = []
    var directory: [UInt8] = []
    for (name, content) in members {
      let data = compress ? try deflate(content) : content
      guard data.count < 0xFFFF_FFFF, content.count < 0xFFFF_FFFF, out.count < 0xFFFF_FFFF else {
        throw DataError("\(name) is too large for a zip archive without Zip64")
      }
      let crc = content.withUnsafeBytes { CRC32().adding($0) }.value
      let nameBytes = Array(name.utf8)
      // Shared by the local header (from byte 4) and the central directory entry (from byte 6).
      var common: [UInt8] = []
      // version, flags, method, time, date
      common.appendLittle(UInt16(20), UInt16(0), UInt16(compress ? 8 : 0), UInt16(0), UInt16(0x21))
      common.appendLittle(
        crc, UInt32(data.count), UInt32(content.count), UInt16(nameBytes.count), UInt16(0))
      directory.appendLittle(UInt32(0x0201_4B50), UInt16(20))
      directory += common
      // comment, disk, attributes, offset
      directory.appendLittle(UInt16(0), UInt16(0), UInt16(0), UInt32(0), UInt32(out.count))
      directory += nameBytes
      out.appendLittle(UInt32(0x0403_4B50))
      out += common
      out += nameBytes
      out += data
    }
    let directoryOffset = out.count
    out += directory
    out.appendLittle(
      UInt32(0x0605_4B50), UInt16(0), UInt16(0), UInt16(members.count), UInt16(members.count))
    out.appendLittle(UInt32(directory.count), UInt32(directoryOffset), UInt16(0))
    return out
  }

  /// Raw deflate (no header), zlib's default level.
  static func deflate(_ input: [UInt8]) throws(DataError) -> [UInt8] {
    var stream = z_stream()
    guard
      deflateInit2_(
        &stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY,
        zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK
    else {
      throw DataError("zlib could not start compressing")
    }
    defer { deflateEnd(&stream) }
    var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, UInt(input.count))))
    let status = finish(&stream, input[...], into: &output, CZlib.deflate)
    guard status == Z_STREAM_END else {
      throw DataError("zlib could not compress (status \(status))")
    }
    return Array(output.prefix(Int(stream.total_out)))
  }
}

extension NPYArray {
  /// A version-1 `.npy` file of `data` (little-endian, C order) with `descr` and `shape`.
  public static func encode(descr: String, shape: [Int], data: [UInt8]) -> [UInt8] {
    let dims =
      shape.count == 1 ? "(\(shape[0]),)" : "(\(shape.map(String.init).joined(separator: ", ")))"
    var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(dims), }"
    // The header ends in a newline, padded so that the data starts on a 64-byte boundary.
    header += String(repeating: " ", count: 63 - (10 + header.utf8.count) % 64) + "\n"
    var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
    out.appendLittle(UInt16(header.utf8.count))
    return out + Array(header.utf8) + data
  }

  /// A float32 array's `.npy` file.
  public static func encode(shape: [Int], floats: [Float]) -> [UInt8] {
    encode(
      descr: "<f4", shape: shape,
      data: floats.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian, Array.init) })
  }

  /// An int64 array's `.npy` file.
  public static func encode(shape: [Int], integers: [Int64]) -> [UInt8] {
    encode(
      descr: "<i8", shape: shape,
      data: integers.flatMap { v in withUnsafeBytes(of: v.littleEndian, Array.init) })
  }
}

extension [UInt8] {
  mutating func appendLittle<each T: FixedWidthInteger>(_ values: repeat each T) {
    for value in repeat each values {
      Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
  }
}
