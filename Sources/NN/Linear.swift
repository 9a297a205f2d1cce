import Linalg

/// A fully connected layer, y = x·Wᵀ + b. Any per-sample input shape is read as a vector.
///
/// Shapes: x [B, I] (or [B, …] with I values per sample), W [O, I], b [O], y [B, O].
public struct Linear: Layer {
  public let inputs: Int
  public let outputs: Int
  let weightOffset: Int
  let biasOffset: Int

  public init(name: String, inputs: Int, outputs: Int, layout: inout ParameterLayout) {
    self.inputs = inputs
    self.outputs = outputs
    weightOffset = layout.add("\(name).weight", shape: [outputs, inputs])
    biasOffset = layout.add("\(name).bias", shape: [outputs])
  }

  public var summary: String { "linear \(inputs)→\(outputs)" }
  public var outputShape: [Int] { [outputs] }
  public var forwardFLOPsPerSample: Int { 2 * inputs * outputs }

  public func initialize(_ store: ParameterStore, _ rng: inout SeededGenerator) {
    heNormal(store.value(at: weightOffset), count: inputs * outputs, fanIn: inputs, &rng)
    store.value(at: biasOffset).update(repeating: 0, count: outputs)
  }

  public func forward(_ x: Tensor, _ store: ParameterStore) -> (Tensor, LayerCache) {
    let batch = x.batchSize
    precondition(x.sampleCount == inputs, "linear: expected \(inputs) inputs per sample, got \(x.sampleCount)")
    var y = [Float](unsafeUninitializedCapacity: batch * outputs) { buffer, initialized in
      let bias = store.value(at: biasOffset)
      for row in 0..<batch { (buffer.baseAddress! + row * outputs).update(from: bias, count: outputs) }
      initialized = batch * outputs
    }
    x.storage.withUnsafeBufferPointer { xp in
      y.withUnsafeMutableBufferPointer { yp in
        // y[B, O] = x[B, I] · W[O, I]ᵀ + y (y holds the bias rows)
        gemm(.none, .transposed, m: batch, n: outputs, k: inputs,
             a: xp.baseAddress!, aCount: xp.count,
             b: store.value(at: weightOffset), bCount: inputs * outputs,
             beta: 1, c: yp.baseAddress!, cCount: yp.count)
      }
    }
    return (Tensor(shape: [batch, outputs], storage: y), LayerCache(tensors: [x]))
  }

  public func backward(
    _ dy: Tensor, _ cache: LayerCache, _ store: ParameterStore, inputGradient: Bool
  ) -> Tensor? {
    let x = cache.tensors[0]
    let batch = x.batchSize
    dy.storage.withUnsafeBufferPointer { dyp in
      x.storage.withUnsafeBufferPointer { xp in
        // dW[O, I] += dy[B, O]ᵀ · x[B, I]
        gemm(.transposed, .none, m: outputs, n: inputs, k: batch,
             a: dyp.baseAddress!, aCount: dyp.count, b: xp.baseAddress!, bCount: xp.count,
             beta: 1, c: store.gradient(at: weightOffset), cCount: inputs * outputs)
      }
      // db[O] += Σ_B dy[B, O]
      let db = store.gradient(at: biasOffset)
      for row in 0..<batch {
        let r = dyp.baseAddress! + row * outputs
        for o in 0..<outputs { db[o] += r[o] }
      }
    }
    guard inputGradient else { return nil }
    // sgemm with beta = 0 writes every element, so dx starts uninitialised.
    let dx = [Float](unsafeUninitializedCapacity: batch * inputs) { dxp, initialized in
      dy.storage.withUnsafeBufferPointer { dyp in
        // dx[B, I] = dy[B, O] · W[O, I]
        gemm(.none, .none, m: batch, n: inputs, k: outputs,
             a: dyp.baseAddress!, aCount: dyp.count,
             b: store.value(at: weightOffset), bCount: inputs * outputs,
             c: dxp.baseAddress!, cCount: dxp.count)
      }
      initialized = batch * inputs
    }
    return Tensor(shape: x.shape, storage: dx)
  }
}
