/// Direct random target projection (DRTP, Frenkel et al. 2021) for one hidden layer: a fixed
/// random matrix B, n × C with entries U[−1/√n, 1/√n], drawn from a seed and never trained or
/// sent. DRTP is DFA with the output error e = softmax − onehot(y) replaced by what it is
/// before anything is learnt, −onehot(y); the layer's surrogate objective is
///
///     L = −(1/B) Σ_i ⟨B[:, y_i], h_i⟩          h: [B, n] (any per-sample shape of n values)
///
/// so ∂L/∂h_i = −B[:, y_i] / B — the target projected — and backpropagated through the
/// layer's own nonlinearity and weights it gives δ = (B(−onehot(y))) ⊙ f′(a) and
/// ∂L/∂W = δ xᵀ: no error from the layers above, so a stage never waits for one. (With B
/// drawn symmetric about 0, B and −B are equally likely: the sign is a convention.)
public struct TargetProjection: Sendable {
  public let width: Int
  public let classes: Int
  /// Class-major: values [c·n, (c+1)·n) are B[:, c], so projecting a label is one copy.
  public let columns: [Float]

  public init(width: Int, classes: Int, rng: inout SeededGenerator) {
    (self.width, self.classes) = (width, classes)
    let bound = 1 / Double(width).squareRoot()
    columns = (0..<(width * classes)).map { _ in Float((2 * rng.nextUnit() - 1) * bound) }
  }

  /// The surrogate loss at h [B, …] and its gradient ∂L/∂h (h's shape).
  public func loss(_ h: Tensor, labels: [Int32]) -> (loss: Float, gradient: Tensor) {
    precondition(h.sampleCount == width && h.batchSize == labels.count, "target projection: h \(h.shape) for \(labels.count) labels, width \(width)")
    let scale = 1 / Float(labels.count)
    var gradient = Tensor(zeros: h.shape)
    var loss: Float = 0
    for (i, label) in labels.enumerated() {
      let column = Int(label) * width
      for j in 0..<width {
        let g = -columns[column + j] * scale
        gradient.storage[i * width + j] = g
        loss += g * h.storage[i * width + j]
      }
    }
    return (loss, gradient)
  }
}
