import Testing

@testable import NN

@Suite("Reduced wire formats: f16, bf16, int8 per row")
struct ValueFormatTests {
  /// Values over many magnitudes, both signs, with exact zeros.
  static let values: [Float] = {
    var rng = SeededGenerator(seed: 5)
    return (0..<512).map { i -> Float in
      let magnitude = Float(sign: .plus, exponent: i % 13 - 6, significand: 1)  // 2⁻⁶ … 2⁶
      return i % 97 == 0 ? 0 : Float(rng.nextNormal()) * magnitude
    }
  }()

  /// Each format keeps what it promises: f16 and bf16 within half a unit in the last place
  /// (2⁻¹¹ and 2⁻⁸ relative), int8 within half a step of its row's scale; sizes as stated.
  @Test(arguments: [(ValueFormat.f16, Float(1.0 / 2048)), (.bf16, Float(1.0 / 256)), (.f32, Float(0))])
  func floatFormatsRoundToNearest(format: ValueFormat, relative: Float) {
    let bytes = format.encode(Self.values, rows: 4)
    #expect(bytes.count == format.byteCount(count: 512, rows: 4) && bytes.count == (format == .f32 ? 2048 : 1024))
    let back = format.decode(bytes, count: 512, rows: 4)
    for (x, y) in zip(Self.values, back) {
      #expect(abs(x - y) <= abs(x) * relative, "\(format): \(x) → \(y)")
      // Not merely truncated: the error is at most half a unit, so some values round up.
    }
    if format != .f32 {
      let truncatedTooOften = zip(Self.values, back).filter { abs($1) < abs($0) }.count
      #expect(truncatedTooOften < 400, "rounds to nearest, not towards zero (\(truncatedTooOften) of 512 shrank)")
    }
  }

  @Test func int8KeepsEachRowWithinHalfAStep() {
    let rows = 4, n = 128
    let bytes = ValueFormat.int8.encode(Self.values, rows: rows)
    #expect(bytes.count == rows * n + 4 * rows)
    let back = ValueFormat.int8.decode(bytes, count: rows * n, rows: rows)
    for r in 0..<rows {
      let row = Self.values[(r * n)..<((r + 1) * n)]
      let scale = row.map(abs).max()! / 127
      for j in 0..<n {
        #expect(abs(back[r * n + j] - row[r * n + j]) <= scale / 2 * 1.0001, "row \(r) value \(j)")
      }
      // The largest value of a row survives exactly (±127 steps).
      let largest = row.indices.max { abs(row[$0]) < abs(row[$1]) }!
      #expect(abs(back[largest] - row[largest]) <= abs(row[largest]) * 1e-6)
    }
  }

  @Test func specialValuesSurvive() {
    let special: [Float] = [0, -0.0, 1, -2, 65504, .infinity, .nan, 3.0e38]
    let bf16 = ValueFormat.bf16.decode(ValueFormat.bf16.encode(special, rows: 1), count: 8, rows: 1)
    #expect(bf16[0] == 0 && bf16[2] == 1 && bf16[3] == -2 && bf16[5] == .infinity && bf16[6].isNaN && bf16[7].isFinite)
    let f16 = ValueFormat.f16.decode(ValueFormat.f16.encode(special, rows: 1), count: 8, rows: 1)
    #expect(f16[4] == 65504 && f16[6].isNaN && f16[7] == .infinity, "beyond f16's range: infinity")
    // A row holding NaN decodes to NaN (a diverged stage stays visible); a zero row to zeros.
    let rows: [Float] = [1, .nan, 2, 0, 0, 0]
    let int8 = ValueFormat.int8.decode(ValueFormat.int8.encode(rows, rows: 2), count: 6, rows: 2)
    #expect(int8[0].isNaN && int8[2].isNaN && int8[3...] == [0, 0, 0])
  }
}
