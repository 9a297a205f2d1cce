import Datasets
import Foundation
import NN

/// The safetensors format: an 8-byte little-endian header length, a JSON header naming each
/// tensor's dtype, shape and byte range (plus string `__metadata__`), then the raw data.
/// Only F32 tensors are written and read.
public enum Safetensors {
  public struct FormatError: Error, CustomStringConvertible, Equatable {
    public var path: String
    public var reason: String
    public var description: String {
      "\(path) is not a usable safetensors file: \(reason) (the file is damaged or from another "
        + "program; use another checkpoint)"
    }
  }

  /// A named tensor for writing, in the order given.
  public struct Entry: Sendable {
    public var name: String
    public var shape: [Int]
    public var values: [Float]
    public init(name: String, shape: [Int], values: [Float]) {
      precondition(
        shape.reduce(1, *) == values.count, "safetensors: \(name) shape and values disagree")
      (self.name, self.shape, self.values) = (name, shape, values)
    }
  }

  /// The file's bytes for `entries` and `metadata`.
  /// The metadata key holding the CRC-32 of the data section (hex): flipped bytes in a tensor
  /// are found on load instead of training on.
  public static let checksumKey = "data_crc32"

  public static func encode(_ entries: [Entry], metadata: [String: String]) -> [UInt8] {
    var metadata = metadata
    metadata[checksumKey] = String(
      entries.reduce(CRC32()) { crc, entry in entry.values.withUnsafeBytes { crc.adding($0) } }
        .value, radix: 16)
    var header: [String: Any] = [:]
    var offset = 0
    for entry in entries {
      let size = entry.values.count * 4
      header[entry.name] =
        ["dtype": "F32", "shape": entry.shape, "data_offsets": [offset, offset + size]]
        as [String: Any]
      offset += size
    }
    if !metadata.isEmpty { header["__metadata__"] = metadata }
    var json = Array(
      (try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
        ?? Data("{}".utf8))
    while json.count % 8 != 0 { json.append(0x20) }  // pad with spaces to 8-byte alignment
    var bytes = [UInt8]()
    bytes.reserveCapacity(8 + json.count + offset)
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { bytes.append(contentsOf: $0) }
    bytes.append(contentsOf: json)
    for entry in entries {
      entry.values.withUnsafeBytes { bytes.append(contentsOf: $0) }  // little-endian hosts only
    }
    return bytes
  }

  /// Writes `entries` atomically to `path`.
  public static func write(_ entries: [Entry], metadata: [String: String], to path: String) throws {
    try AtomicFile.write(encode(entries, metadata: metadata), to: path)
  }

  /// Decodes a file's bytes; every offset and shape is checked against the data.
  public static func decode(_ bytes: [UInt8], path: String = "checkpoint") throws(FormatError)
    -> (tensors: [String: Tensor], metadata: [String: String])
  {
    func fail(_ reason: String) -> FormatError { FormatError(path: path, reason: reason) }
    guard bytes.count >= 8 else { throw fail("shorter than its 8-byte header length") }
    var length: UInt64 = 0
    for i in 0..<8 { length |= UInt64(bytes[i]) << (8 * UInt64(i)) }
    guard length <= UInt64(bytes.count - 8) else {
      throw fail("header length \(length) runs past the end of the file")
    }
    let dataStart = 8 + Int(length)
    guard let object = try? JSONSerialization.jsonObject(with: Data(bytes[8..<dataStart])),
      let header = object as? [String: Any]
    else { throw fail("header is not a JSON object") }
    let dataSize = bytes.count - dataStart
    var tensors: [String: Tensor] = [:]
    var metadata: [String: String] = [:]
    for (name, value) in header {
      if name == "__metadata__" {
        metadata = (value as? [String: String]) ?? [:]
        continue
      }
      guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
        let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int],
        offsets.count == 2
      else { throw fail("entry \(name) is malformed") }
      guard dtype == "F32" else {
        throw fail("entry \(name) has dtype \(dtype), only F32 is supported")
      }
      let (begin, end) = (offsets[0], offsets[1])
      guard shape.allSatisfy({ $0 >= 0 }), begin >= 0, begin <= end, end <= dataSize else {
        throw fail("entry \(name) points outside the data (truncated file?)")
      }
      let count = shape.reduce(1, *)
      guard end - begin == count * 4 else {
        throw fail("entry \(name): shape \(shape) needs \(count * 4) bytes, has \(end - begin)")
      }
      var values = [Float](repeating: 0, count: count)
      values.withUnsafeMutableBytes { target in
        bytes.withUnsafeBytes { source in
          target.copyMemory(
            from: UnsafeRawBufferPointer(rebasing: source[(dataStart + begin)..<(dataStart + end)]))
        }
      }
      tensors[name] = Tensor(shape: [1] + shape, storage: values).reshaped(
        shape.isEmpty ? [1] : shape)
    }
    if let stored = ((header["__metadata__"] as? [String: String]) ?? [:])[checksumKey] {
      let computed = String(
        bytes[dataStart...].withUnsafeBytes { CRC32().adding($0) }.value, radix: 16)
      guard computed == stored else {
        throw fail(
          "its data does not match its checksum (stored \(stored), computed \(computed)): bytes "
            + "were changed or lost"
        )
      }
    }
    return (tensors, metadata)
  }

  /// Reads and decodes `path`.
  public static func read(_ path: String) throws(FormatError) -> (
    tensors: [String: Tensor], metadata: [String: String]
  ) {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw FormatError(path: path, reason: "cannot be read")
    }
    return try decode(Array(data), path: path)
  }
}
