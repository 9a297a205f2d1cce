/// Inverted dropout: in training each value is kept with probability 1 − p and scaled by
/// 1/(1 − p), so evaluation (`infer`) is the identity. The mask of a forward pass is drawn from
/// the layer's seed and its count of forward passes so far, which the store keeps as state
/// beside the parameters: a resumed run, another process building the same stage and the
/// one-process trainer all draw the same masks.
///
/// Shapes: x, y, dy, dx [B, …] alike; the forward count [1] (exact up to 2²⁴ passes).
public struct Dropout: Layer {
  public let outputShape: [Int]
  public let rate: Float
  public let seed: UInt64
  let draws: Int

  public init(name: String, shape: [Int], rate: Float, seed: UInt64, layout: inout ParameterLayout)
  {
    precondition((0..<1).contains(rate), "dropout rate \(rate) outside [0, 1)")
    (outputShape, self.rate, self.seed) = (shape, rate, seed)
    draws = layout.add("\(name).draws", shape: [1], trainable: false)
  }

  public var summary: String { "dropout \(rate)" }

  /// Training: y = x ⊙ m with m_i = 1/(1 − p) for kept values, 0 for dropped ones; caches m.
  public func forward(_ x: Tensor, _ store: ParameterStore) -> (Tensor, LayerCache) {
    let counter = store.value(at: draws)
    var rng = SeededGenerator(seed: seed, stream: UInt64(counter.pointee))
    counter.pointee += 1
    let keep = 1 / (1 - rate)
    var mask = Tensor(zeros: x.shape)
    var y = Tensor(zeros: x.shape)
    for i in 0..<x.count where Float(rng.nextUnit()) >= rate {
      mask.storage[i] = keep
      y.storage[i] = x.storage[i] * keep
    }
    return (y, LayerCache(tensors: [mask]))
  }

  /// Evaluation: the identity.
  public func infer(_ x: Tensor, _ store: ParameterStore) -> Tensor { x }

  /// dx = dy ⊙ m.
  public func backward(
    _ dy: Tensor, _ cache: LayerCache, _ store: ParameterStore, inputGradient: Bool
  ) -> Tensor? {
    guard inputGradient else { return nil }
    var dx = dy
    for i in 0..<dx.count { dx.storage[i] *= cache.tensors[0].storage[i] }
    return dx
  }
}
