import CZlib

/// The members of a zip archive, as NumPy's `savez` (stored) and `savez_compressed` (deflate)
/// write them: the central directory read from the end record (Zip64 sizes and offsets
/// included), each member inflated through zlib and its CRC-32 checked.
public struct ZipArchive {
  public struct Member: Sendable {
    public var name: String
    /// 0: stored; 8: deflate.
    var method: UInt16
    var flags: UInt16
    var crc: UInt32
    var compressedSize: Int
    var size: Int
    var localHeaderOffset: Int
  }

  public let members: [Member]
  let bytes: [UInt8]
  /// The file's name, for errors.
  let name: String

  /// Reads the central directory of the archive in `bytes`.
  public init(_ bytes: [UInt8], name: String) throws(DataError) {
    (self.bytes, self.name) = (bytes, name)
    let reader = ByteReader(bytes: bytes, name: name)
    // The end-of-central-directory record: 22 bytes and a comment of up to 64 KiB.
    let lowest = max(0, bytes.count - 22 - 0xFFFF)
    guard bytes.count >= 22,
      let end = stride(from: bytes.count - 22, through: lowest, by: -1).first(where: {
        reader.u32Unchecked($0) == 0x0605_4B50
      })
    else {
      throw DataError(
        "\(name) is not a zip archive (no end-of-central-directory record): a truncated or non-npz "
          + "file",
        hint: "write it again with numpy.savez or numpy.savez_compressed")
    }
    var count = Int(try reader.u16(end + 10))
    var directorySize = Int(try reader.u32(end + 12))
    var directoryOffset = Int(try reader.u32(end + 16))
    if count == 0xFFFF || directoryOffset == 0xFFFF_FFFF || directorySize == 0xFFFF_FFFF {
      // Zip64: a locator just before the end record points at the Zip64 end record.
      guard end >= 20, try reader.u32(end - 20) == 0x0706_4B50 else {
        throw reader.damaged("no Zip64 end-record locator")
      }
      let end64 = Int(try reader.u64(end - 12))
      guard try reader.u32(end64) == 0x0606_4B50 else {
        throw reader.damaged("no Zip64 end record at \(end64)")
      }
      count = Int(try reader.u64(end64 + 32))
      directorySize = Int(try reader.u64(end64 + 40))
      directoryOffset = Int(try reader.u64(end64 + 48))
    }
    guard directoryOffset + directorySize <= bytes.count else {
      throw reader.damaged("its central directory runs past the end of the file")
    }
    var members: [Member] = []
    var at = directoryOffset
    for _ in 0..<count {
      guard try reader.u32(at) == 0x0201_4B50 else {
        throw reader.damaged("central directory entry \(members.count) has a bad signature")
      }
      let nameLength = Int(try reader.u16(at + 28))
      let extraLength = Int(try reader.u16(at + 30))
      let commentLength = Int(try reader.u16(at + 32))
      var member = Member(
        name: String(decoding: try reader.slice(at + 46, nameLength), as: UTF8.self),
        method: try reader.u16(at + 10), flags: try reader.u16(at + 8),
        crc: try reader.u32(at + 16),
        compressedSize: Int(try reader.u32(at + 20)), size: Int(try reader.u32(at + 24)),
        localHeaderOffset: Int(try reader.u32(at + 42)))
      try member.readZip64(reader, extraAt: at + 46 + nameLength, length: extraLength)
      members.append(member)
      at += 46 + nameLength + extraLength + commentLength
    }
    self.members = members
  }

  /// The uncompressed content of `member`, its CRC-32 checked.
  public func read(_ member: Member) throws(DataError) -> [UInt8] {
    let reader = ByteReader(bytes: bytes, name: name)
    let what = "member \(member.name)"
    guard member.flags & 1 == 0 else {
      throw DataError("\(name): \(what) is encrypted", hint: "write the arrays without a password")
    }
    let local = member.localHeaderOffset
    guard try reader.u32(local) == 0x0403_4B50 else {
      throw reader.damaged("\(what) has no local header")
    }
    let start = local + 30 + Int(try reader.u16(local + 26)) + Int(try reader.u16(local + 28))
    let stored = try reader.slice(start, member.compressedSize)
    let content: [UInt8]
    switch member.method {
    case 0:
      guard member.compressedSize == member.size else {
        throw reader.damaged("\(what) is stored with two sizes")
      }
      content = Array(stored)
    case 8: content = try Self.inflate(stored, size: member.size, what: "\(name): \(what)")
    default:
      throw DataError(
        "\(name): \(what) uses zip compression method \(member.method)",
        hint: "only stored and deflate (numpy.savez, numpy.savez_compressed) are read")
    }
    let crc = content.withUnsafeBytes { CRC32().adding($0) }.value
    guard crc == member.crc else { throw reader.damaged("\(what) fails its CRC-32 check") }
    return content
  }

  public func member(named name: String) -> Member? { members.first { $0.name == name } }

  /// The `.npy` array stored as `NAME.npy`, or nil when there is none (errors name it `FILE:
  /// NAME`).
  func array(named name: String) throws(DataError) -> NPYArray? {
    guard let member = member(named: "\(name).npy") else { return nil }
    return try NPYArray(parsing: read(member), name: "\(self.name): \(name)")
  }

  /// The names of its arrays (members less `.npy`).
  var arrayNames: [String] {
    members.map { $0.name.hasSuffix(".npy") ? String($0.name.dropLast(4)) : $0.name }
  }

  /// Points `stream` at all of `input` and `output` and runs `step` (zlib's inflate or
  /// deflate) once to the end; returns its status.
  static func finish(
    _ stream: inout z_stream, _ input: ArraySlice<UInt8>, into output: inout [UInt8],
    _ step: (UnsafeMutablePointer<z_stream>, Int32) -> Int32
  ) -> Int32 {
    input.withUnsafeBytes { inp in
      output.withUnsafeMutableBytes { out in
        stream.next_in = UnsafeMutablePointer(mutating: inp.bindMemory(to: Bytef.self).baseAddress)
        stream.avail_in = UInt32(inp.count)
        stream.next_out = out.bindMemory(to: Bytef.self).baseAddress
        stream.avail_out = UInt32(out.count)
        return step(&stream, Z_FINISH)
      }
    }
  }

  /// Raw deflate data (no zlib or gzip header) inflated to exactly `size` bytes.
  static func inflate(_ input: ArraySlice<UInt8>, size: Int, what: String) throws(DataError)
    -> [UInt8]
  {
    var output = [UInt8](repeating: 0, count: size)
    var stream = z_stream()
    guard
      inflateInit2_(&stream, -MAX_WBITS, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK
    else {
      throw DataError("\(what): zlib could not start inflating")
    }
    defer { inflateEnd(&stream) }
    let status = finish(&stream, input, into: &output, CZlib.inflate)
    guard status == Z_STREAM_END, Int(stream.total_out) == size else {
      throw DataError(
        "\(what) does not inflate to its stated \(size) bytes (zlib status \(status)): the file is "
          + "damaged",
        hint: "write it again")
    }
    return output
  }
}

extension ZipArchive.Member {
  /// Sizes and offset the 32-bit fields mark 0xFFFFFFFF, from the Zip64 extra field (id 1),
  /// in the order the format gives them.
  mutating func readZip64(_ reader: ByteReader, extraAt start: Int, length: Int) throws(DataError) {
    guard size == 0xFFFF_FFFF || compressedSize == 0xFFFF_FFFF || localHeaderOffset == 0xFFFF_FFFF
    else { return }
    var at = start
    while at + 4 <= start + length {
      let id = try reader.u16(at)
      let fieldLength = Int(try reader.u16(at + 2))
      if id == 1 {
        var field = at + 4
        if size == 0xFFFF_FFFF {
          size = Int(try reader.u64(field))
          field += 8
        }
        if compressedSize == 0xFFFF_FFFF {
          compressedSize = Int(try reader.u64(field))
          field += 8
        }
        if localHeaderOffset == 0xFFFF_FFFF { localHeaderOffset = Int(try reader.u64(field)) }
        return
      }
      at += 4 + fieldLength
    }
    throw reader.damaged("member \(name) needs Zip64 sizes and has none")
  }
}

/// Little-endian fields of a file's bytes, bounds-checked: reading past the end is a
/// truncated file.
struct ByteReader {
  let bytes: [UInt8]
  let name: String

  func damaged(_ why: String) -> DataError {
    DataError(
      "\(name) is damaged: \(why)", hint: "write it again (numpy.savez or numpy.savez_compressed)")
  }

  func slice(_ at: Int, _ count: Int) throws(DataError) -> ArraySlice<UInt8> {
    guard at >= 0, count >= 0, at <= bytes.count - count else {
      throw DataError(
        "\(name) is truncated: it ends at byte \(bytes.count), before byte \(at + count) that it "
          + "refers to",
        hint: "copy or write it again")
    }
    return bytes[at..<(at + count)]
  }

  func u16(_ at: Int) throws(DataError) -> UInt16 { UInt16(try little(at, 2)) }
  func u32(_ at: Int) throws(DataError) -> UInt32 { UInt32(try little(at, 4)) }
  func u64(_ at: Int) throws(DataError) -> UInt64 { try little(at, 8) }
  func u32Unchecked(_ at: Int) -> UInt32 { UInt32((try? little(at, 4)) ?? 0) }

  func little(_ at: Int, _ width: Int) throws(DataError) -> UInt64 {
    try slice(at, width).reversed().reduce(0) { $0 << 8 | UInt64($1) }
  }
}
