import Linalg

/// The fixed random feedback matrix of one hidden layer for DFA (Nøkland 2016) and DRTP
/// (Frenkel et al. 2021): B, n × C with entries U[−1/√n, 1/√n], drawn from a seed and never
/// trained or sent. An output error e [B, C] reaches the layer's output h [B, n] as
///
///     ∂L/∂h = e · Bᵀ          (per sample: B e_i)
///
/// and, backpropagated through the layer's own nonlinearity and weights, gives
/// δ = (B e) ⊙ f′(a) and ∂L/∂W = δ xᵀ: nothing from the layers above.
/// - DFA: e = (softmax − onehot(y)) / B, the last stage's output error, sent back to every
///   earlier stage.
/// - DRTP: e = −onehot(y) / B — DFA's error before anything is learnt — which every stage
///   has with its labels, so no message travels back. (With B drawn symmetric about 0, B and
///   −B are equally likely: the sign is a convention.)
///
/// The surrogate objective of a layer is L = Σ_i ⟨B e_i, h_i⟩, whose gradient at h is B e.
public struct TargetProjection: Sendable {
  public let width: Int
  public let classes: Int
  /// Bᵀ, C × n, class-major: values [c·n, (c+1)·n) are B[:, c].
  public let columns: [Float]

  public init(width: Int, classes: Int, rng: inout SeededGenerator) {
    (self.width, self.classes) = (width, classes)
    let bound = 1 / Double(width).squareRoot()
    columns = (0..<(width * classes)).map { _ in Float((2 * rng.nextUnit() - 1) * bound) }
  }

  /// ∂L/∂h = e · Bᵀ for an error e [B, C]; the result has `shape` (h's, [B, …] with n values
  /// per sample).
  public func project(_ error: Tensor, shape: [Int]) -> Tensor {
    let rows = error.batchSize
    precondition(
      error.sampleCount == classes && shape.first == rows
        && shape.dropFirst().reduce(1, *) == width,
      "target projection: error \(error.shape) onto \(shape), width \(width), \(classes) classes")
    let g = [Float](unsafeUninitializedCapacity: rows * width) { gp, initialized in
      error.storage.withUnsafeBufferPointer { ep in
        columns.withUnsafeBufferPointer { bp in
          // g[B, n] = e[B, C] · Bᵀ[C, n]
          gemm(
            .none, .none, m: rows, n: width, k: classes, a: ep.baseAddress!, aCount: ep.count,
            b: bp.baseAddress!, bCount: bp.count, c: gp.baseAddress!, cCount: rows * width)
        }
      }
      initialized = rows * width
    }
    return Tensor(shape: shape, storage: g)
  }

  /// DRTP's error, −onehot(y) / B [B, C].
  public static func targetError(labels: [Int32], classes: Int) -> Tensor {
    var e = Tensor(zeros: [labels.count, classes])
    for (i, label) in labels.enumerated() {
      e.storage[i * classes + Int(label)] = -1 / Float(labels.count)
    }
    return e
  }

  /// The surrogate loss at h [B, …] for error e, and its gradient ∂L/∂h (h's shape).
  public func loss(_ h: Tensor, error: Tensor) -> (loss: Float, gradient: Tensor) {
    let gradient = project(error, shape: h.shape)
    var loss: Float = 0
    for i in 0..<h.count { loss += gradient.storage[i] * h.storage[i] }
    return (loss, gradient)
  }
}
