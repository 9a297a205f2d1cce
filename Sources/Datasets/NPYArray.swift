import Foundation

/// One NumPy `.npy` array: the magic string, the version, a Python-literal header naming the
/// element type (`descr`), the memory order and the shape, then the elements.
public struct NPYArray: Sendable {
  /// The element types read: unsigned bytes, float32, and integers (labels) of any width.
  public enum Element: Equatable, Sendable {
    case uint8
    case float32
    case integer(bytes: Int, signed: Bool)

    var size: Int {
      switch self {
      case .uint8: 1
      case .float32: 4
      case .integer(let bytes, _): bytes
      }
    }
  }

  public var descr: String
  public var element: Element?
  public var shape: [Int]
  /// The elements, little-endian, C order.
  public var data: ArraySlice<UInt8>

  /// Parses `.npy` bytes; `name` (archive and member) is used in errors.
  public init(parsing bytes: [UInt8], name: String) throws(DataError) {
    let reader = ByteReader(bytes: bytes, name: name)
    let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)
    guard bytes.count >= 10, Array(bytes[0..<6]) == magic else {
      throw DataError(
        "\(name) is not a NumPy array (no \\x93NUMPY magic)",
        hint: "write the arrays with numpy.savez")
    }
    let major = bytes[6]
    guard (1...3).contains(major) else {
      throw DataError("\(name): .npy format version \(major) is not read (1 to 3 are)")
    }
    let headerLength = major == 1 ? Int(try reader.u16(8)) : Int(try reader.u32(8))
    let headerStart = major == 1 ? 10 : 12
    let header = String(decoding: try reader.slice(headerStart, headerLength), as: UTF8.self)
    guard let descr = Self.field("descr", in: header).flatMap(Self.quoted),
      let order = Self.field("fortran_order", in: header),
      let shapeText = Self.field("shape", in: header)
    else {
      throw DataError(
        "\(name): its .npy header cannot be read: \(header.prefix(120))",
        hint: "write it with numpy.savez")
    }
    guard order.hasPrefix("False") else {
      throw DataError(
        "\(name) is stored in Fortran order", hint: "write numpy.ascontiguousarray(a) instead")
    }
    guard let shape = Self.shape(shapeText) else {
      throw DataError("\(name): shape \(shapeText) cannot be read")
    }
    self.descr = descr
    self.shape = shape
    element = Self.element(descr)
    let start = headerStart + headerLength
    guard let size = element?.size else {
      data = bytes[min(start, bytes.count)...]
      return
    }
    let count = shape.reduce(1, *) * size
    data = try reader.slice(start, count)
    guard bytes.count == start + count else {
      throw DataError(
        "\(name) holds \(bytes.count - start) bytes of data; its header says \(count)",
        hint: "write it again")
    }
  }

  /// The text after `'key':` up to the next top-level comma or the closing brace.
  static func field(_ key: String, in header: String) -> String? {
    guard let range = header.range(of: "'\(key)':") else { return nil }
    var depth = 0
    var value = ""
    for character in header[range.upperBound...] {
      if character == "(" { depth += 1 }
      if character == ")" { depth -= 1 }
      if depth == 0 && (character == "," || character == "}") { break }
      value.append(character)
    }
    return value.trimmingCharacters(in: .whitespaces)
  }

  static func quoted(_ text: String) -> String? {
    guard text.count >= 2, text.first == "'" || text.first == "\"" else { return nil }
    return String(text.dropFirst().dropLast())
  }

  /// "(60000, 28, 28)", "(10,)" or "()".
  static func shape(_ text: String) -> [Int]? {
    guard text.hasPrefix("("), text.hasSuffix(")") else { return nil }
    let parts = text.dropFirst().dropLast().split(separator: ",").map {
      $0.trimmingCharacters(in: .whitespaces)
    }.filter { !$0.isEmpty }
    let dims = parts.compactMap { Int($0.hasSuffix("L") ? String($0.dropLast()) : $0) }
    return dims.count == parts.count && dims.allSatisfy { $0 >= 0 } ? dims : nil
  }

  /// The element type of a little-endian (or byte) `descr`; nil for any other.
  static func element(_ descr: String) -> Element? {
    guard let order = descr.first, "<|=".contains(order) else { return nil }
    switch descr.dropFirst() {
    case "u1": return .uint8
    case "f4": return .float32
    case "i1", "i2", "i4", "i8": return .integer(bytes: Int(String(descr.last!))!, signed: true)
    case "u2", "u4", "u8": return .integer(bytes: Int(String(descr.last!))!, signed: false)
    default: return nil
    }
  }

  public var bytes: [UInt8] { Array(data) }

  public var floats: [Float] {
    data.withUnsafeBytes { raw in
      (0..<(raw.count / 4)).map {
        Float(bitPattern: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self).littleEndian)
      }
    }
  }

  /// Integer elements (uint8 or any integer type) as Int64; nil for floats.
  public var integers: [Int64]? {
    let width: Int
    let signed: Bool
    switch element {
    case .uint8: (width, signed) = (1, false)
    case .integer(let b, let s): (width, signed) = (b, s)
    default: return nil
    }
    let bytes = Array(data)
    return (0..<(bytes.count / width)).map { i in
      var v: UInt64 = 0
      for k in (0..<width).reversed() { v = v << 8 | UInt64(bytes[i * width + k]) }
      if signed && width < 8 && v >> (8 * width - 1) & 1 == 1 { v |= ~0 << (8 * width) }
      return Int64(bitPattern: v)
    }
  }
}
