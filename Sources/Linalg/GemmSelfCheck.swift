/// A quick numerical check of the loaded sgemm kernels against a double-precision reference,
/// run before a kernel choice is trusted (older OpenBLAS builds computed wrong results on some
/// processors). A few odd shapes in every transpose combination, so edge kernels run too;
/// about a millisecond.
public enum GemmSelfCheck {
  /// The worst error seen, relative to Σ|a||b| of its element (about k·2⁻²⁴ when sgemm is right).
  public static func worstRelativeError() -> Double {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    func next() -> Float {  // xorshift, uniform in [−1, 1)
      state ^= state << 13
      state ^= state >> 7
      state ^= state << 17
      return Float(Int64(bitPattern: state >> 11) % 2_000_001) / 1_000_000 - 1
    }
    var worst = 0.0
    for (m, n, k) in [(7, 13, 5), (33, 47, 65), (48, 20, 70)] {
      for transA in [Transpose.none, .transposed] {
        for transB in [Transpose.none, .transposed] {
          let a = (0..<(m * k)).map { _ in next() }
          let b = (0..<(k * n)).map { _ in next() }
          var c = (0..<(m * n)).map { _ in next() }
          let c0 = c
          let (alpha, beta): (Float, Float) = (0.75, 0.5)
          gemm(
            transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, aCount: a.count, b: b,
            bCount: b.count, beta: beta, c: &c, cCount: c.count)
          for i in 0..<m {
            for j in 0..<n {
              var exact = 0.0
              var scale = 0.0
              for p in 0..<k {
                let x = Double(transA == .none ? a[i * k + p] : a[p * m + i])
                let y = Double(transB == .none ? b[p * n + j] : b[j * k + p])
                exact += x * y
                scale += abs(x * y)
              }
              exact = Double(alpha) * exact + Double(beta) * Double(c0[i * n + j])
              let error =
                abs(Double(c[i * n + j]) - exact) / (scale + abs(Double(c0[i * n + j])) + 1e-30)
              worst = max(worst, error.isNaN ? .infinity : error)
            }
          }
        }
      }
    }
    return worst
  }

  /// Whether sgemm passes: every element within 1e-4 of its scale (a wrong kernel is off by
  /// the whole scale; float rounding over k ≤ 70 terms stays near 1e-6).
  public static func passes() -> Bool { worstRelativeError() < 1e-4 }
}
