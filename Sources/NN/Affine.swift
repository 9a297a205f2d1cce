import Linalg

/// The affine map both Linear and Conv2D (on its im2col matrix) compute, as one
/// forward/backward pair over a parameter store.
///
/// Shapes: x [R, I], W [O, I] at `weightOffset`, b [O] at `biasOffset`, y [R, O].
struct Affine: Sendable {
  let inputs: Int
  let outputs: Int
  let weightOffset: Int
  let biasOffset: Int

  func scaleWeights(by factor: Float, _ store: ParameterStore) {
    let w = store.value(at: weightOffset)
    for i in 0..<(inputs * outputs) { w[i] *= factor }
  }

  /// y = x·Wᵀ + b.
  func forward(_ x: [Float], rows: Int, _ store: ParameterStore) -> [Float] {
    var y = [Float](unsafeUninitializedCapacity: rows * outputs) { buffer, initialized in
      let bias = store.value(at: biasOffset)
      for r in 0..<rows { (buffer.baseAddress! + r * outputs).update(from: bias, count: outputs) }
      initialized = rows * outputs
    }
    x.withUnsafeBufferPointer { xp in
      y.withUnsafeMutableBufferPointer { yp in
        // y[R, O] = x[R, I] · W[O, I]ᵀ + y (y holds the bias rows)
        gemm(
          .none, .transposed, m: rows, n: outputs, k: inputs,
          a: xp.baseAddress!, aCount: xp.count,
          b: store.value(at: weightOffset), bCount: inputs * outputs,
          beta: 1, c: yp.baseAddress!, cCount: yp.count)
      }
    }
    return y
  }

  /// dW += dyᵀ·x, db += Σ_rows dy (or = on the first write since the optimizer step); returns
  /// dx = dy·W when `inputGradient`.
  func backward(
    _ dy: [Float], _ x: [Float], rows: Int, _ store: ParameterStore, inputGradient: Bool
  ) -> [Float]? {
    dy.withUnsafeBufferPointer { dyp in
      x.withUnsafeBufferPointer { xp in
        // dW[O, I] += dy[R, O]ᵀ · x[R, I]   (beta 0 overwrites a stale gradient)
        let (dw, overwrite) = store.accumulationTarget(at: weightOffset)
        gemm(
          .transposed, .none, m: outputs, n: inputs, k: rows,
          a: dyp.baseAddress!, aCount: dyp.count, b: xp.baseAddress!, bCount: xp.count,
          beta: overwrite ? 0 : 1, c: dw, cCount: inputs * outputs)
      }
      let db = store.gradientToAdd(at: biasOffset, count: outputs)
      for r in 0..<rows {
        let row = dyp.baseAddress! + r * outputs
        for o in 0..<outputs { db[o] += row[o] }
      }
    }
    guard inputGradient else { return nil }
    // sgemm with beta = 0 writes every element, so dx starts uninitialised.
    return [Float](unsafeUninitializedCapacity: rows * inputs) { dxp, initialized in
      dy.withUnsafeBufferPointer { dyp in
        // dx[R, I] = dy[R, O] · W[O, I]
        gemm(
          .none, .none, m: rows, n: inputs, k: outputs,
          a: dyp.baseAddress!, aCount: dyp.count,
          b: store.value(at: weightOffset), bCount: inputs * outputs,
          c: dxp.baseAddress!, cCount: dxp.count)
      }
      initialized = rows * inputs
    }
  }
}
