/// How a float tensor is stored when it travels between stages (`daemon.wireFormat`):
/// - `f32`: as it is (4 bytes a value);
/// - `f16`: IEEE half precision, rounded to nearest even (2 bytes; ±65504, 11 significant bits);
/// - `bf16`: the upper half of the f32, rounded to nearest even (2 bytes; f32's range, 8 bits);
/// - `int8`: per row (one sample), s = max|x| / 127 stored as f32, then q = round(x / s) in
///   −127…127 (1 byte a value + 4 a row). A row holding NaN decodes to NaN, so a diverged
///   stage stays visible downstream.
///
/// Shapes: values [rows, n] (any trailing shape), bytes as `byteCount` says.
public enum ValueFormat: String, Sendable, Codable, CaseIterable {
  case f32, f16, bf16, int8

  /// Bytes that `count` values in `rows` rows take.
  public func byteCount(count: Int, rows: Int) -> Int {
    switch self {
    case .f32: 4 * count
    case .f16, .bf16: 2 * count
    case .int8: count + 4 * rows
    }
  }

  public func encode(_ values: [Float], rows: Int) -> [UInt8] {
    switch self {
    case .f32: return values.withUnsafeBytes { Array($0) }
    case .f16: return values.map { Float16($0).bitPattern }.withUnsafeBytes { Array($0) }
    case .bf16: return values.map(Self.bfloat16).withUnsafeBytes { Array($0) }
    case .int8:
      let n = rows > 0 ? values.count / rows : 0
      var out = [UInt8](repeating: 0, count: byteCount(count: values.count, rows: rows))
      for r in 0..<rows {
        let row = values[(r * n)..<((r + 1) * n)]
        var largest: Float = 0
        var hasNaN = false
        for v in row {
          if v.isNaN { hasNaN = true } else if abs(v) > largest { largest = abs(v) }
        }
        let scale: Float = hasNaN ? .nan : largest / 127
        withUnsafeBytes(of: scale.bitPattern.littleEndian) {
          out.replaceSubrange((4 * r)..<(4 * r + 4), with: $0)
        }
        guard scale > 0, scale.isFinite else { continue }
        let base = 4 * rows + r * n
        for (j, v) in row.enumerated() {
          out[base + j] = UInt8(bitPattern: Int8(max(-127, min(127, (v / scale).rounded()))))
        }
      }
      return out
    }
  }

  /// The values of `bytes` (as `encode` wrote `count` values in `rows` rows).
  public func decode(_ bytes: [UInt8], count: Int, rows: Int) -> [Float] {
    precondition(
      bytes.count == byteCount(count: count, rows: rows),
      "\(self): \(bytes.count) bytes for \(count) values in \(rows) rows")
    switch self {
    case .f32:
      return bytes.withUnsafeBytes { raw in
        (0..<count).map {
          Float(
            bitPattern: UInt32(
              littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)))
        }
      }
    case .f16:
      return bytes.withUnsafeBytes { raw in
        (0..<count).map {
          Float(
            Float16(
              bitPattern: UInt16(
                littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))))
        }
      }
    case .bf16:
      return bytes.withUnsafeBytes { raw in
        (0..<count).map {
          Float(
            bitPattern: UInt32(
              UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)))
              << 16)
        }
      }
    case .int8:
      let n = rows > 0 ? count / rows : 0
      return bytes.withUnsafeBytes { raw in
        var out = [Float](repeating: 0, count: count)
        for r in 0..<rows {
          let scale = Float(
            bitPattern: UInt32(
              littleEndian: raw.loadUnaligned(fromByteOffset: 4 * r, as: UInt32.self)))
          for j in 0..<n {
            out[r * n + j] =
              scale.isNaN ? .nan : Float(Int8(bitPattern: raw[4 * rows + r * n + j])) * scale
          }
        }
        return out
      }
    }
  }

  /// What the receiving stage reads of `x` [rows, …]: decode(encode(x)).
  public func roundTrip(_ x: Tensor) -> Tensor {
    guard self != .f32 else { return x }
    let rows = x.shape.first ?? 0
    return Tensor(
      shape: x.shape, storage: decode(encode(x.storage, rows: rows), count: x.count, rows: rows))
  }

  /// f32 → bf16, rounded to nearest even; NaN stays a (quiet) NaN.
  static func bfloat16(_ x: Float) -> UInt16 {
    let bits = x.bitPattern
    if x.isNaN { return UInt16(bits >> 16) | 0x0040 }
    return UInt16((bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
  }
}
