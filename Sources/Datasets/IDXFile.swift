/// An IDX file (the MNIST family's format): a magic number naming the element type and the
/// rank, big-endian dimensions, then the elements. Only unsigned bytes (type 0x08) are read.
public struct IDXFile: Sendable, Equatable {
  public var dimensions: [Int]
  public var bytes: [UInt8]

  public init(dimensions: [Int], bytes: [UInt8]) {
    self.dimensions = dimensions
    self.bytes = bytes
  }

  /// Parses an IDX file's bytes; `name` is used in errors.
  public init(parsing data: [UInt8], name: String, expectedRank: Int) throws(DataError) {
    let hint =
      "the file is damaged: reinstall with `apt-get install --reinstall dataset-fashion-mnist`"
    guard data.count >= 4 else {
      throw DataError("\(name): too short for an IDX header", hint: hint)
    }
    guard data[0] == 0, data[1] == 0, data[2] == 0x08 else {
      let magic = data[0..<4].map { String($0, radix: 16) }.joined(separator: " ")
      throw DataError(
        "\(name): wrong IDX magic number (\(magic)), expected 00 00 08 0\(expectedRank)", hint: hint
      )
    }
    let rank = Int(data[3])
    guard rank == expectedRank else {
      throw DataError("\(name): IDX rank \(rank), expected \(expectedRank)", hint: hint)
    }
    let headerSize = 4 + 4 * rank
    guard data.count >= headerSize else {
      throw DataError("\(name): truncated IDX header", hint: hint)
    }
    var dims: [Int] = []
    for d in 0..<rank {
      let o = 4 + 4 * d
      dims.append(
        Int(data[o]) << 24 | Int(data[o + 1]) << 16 | Int(data[o + 2]) << 8 | Int(data[o + 3]))
    }
    let expected = dims.reduce(1, *)
    guard data.count - headerSize == expected else {
      throw DataError(
        "\(name): truncated or oversized: header says \(dims) (\(expected) bytes), file holds "
          + "\(data.count - headerSize)",
        hint: hint)
    }
    dimensions = dims
    bytes = Array(data[headerSize...])
  }

  /// The file's bytes, header included (for writing test files).
  public var encoded: [UInt8] {
    var out: [UInt8] = [0, 0, 0x08, UInt8(dimensions.count)]
    for d in dimensions {
      out += [UInt8(d >> 24 & 0xFF), UInt8(d >> 16 & 0xFF), UInt8(d >> 8 & 0xFF), UInt8(d & 0xFF)]
    }
    return out + bytes
  }
}
