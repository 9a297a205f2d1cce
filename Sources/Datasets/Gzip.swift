import CZlib
import Foundation

/// Reads and writes gzip files through zlib (plain files are read as they are: zlib passes
/// them through).
public enum Gzip {
  /// The whole decompressed content of `path`.
  public static func read(_ path: String) throws(DataError) -> [UInt8] {
    guard let file = gzopen(path, "rb") else {
      throw DataError("cannot open \(path)", hint: "check the path and its permissions")
    }
    defer { gzclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
      let got = chunk.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32($0.count)) }
      if got < 0 {
        var code: Int32 = 0
        let text = gzerror(file, &code).map { String(cString: $0) } ?? "unknown error"
        throw DataError(
          "\(path) is not a readable gzip file: \(text)", hint: "download or reinstall it")
      }
      if got == 0 { break }
      bytes.append(contentsOf: chunk[0..<Int(got)])
    }
    return bytes
  }

  /// Writes `bytes` gzip-compressed to `path` (used to make small IDX files in tests).
  public static func write(_ bytes: [UInt8], to path: String) throws(DataError) {
    guard let file = gzopen(path, "wb") else { throw DataError("cannot create \(path)") }
    let written = bytes.withUnsafeBytes { gzwrite(file, $0.baseAddress, UInt32($0.count)) }
    let closed = gzclose(file)
    guard written == bytes.count, closed == Z_OK else { throw DataError("cannot write \(path)") }
  }
}
