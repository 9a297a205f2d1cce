import Testing

@testable import NN

/// Central-difference gradient checks (llm.c's habit): the loss is a fixed random projection
/// of the layer's output, L = Σ y ⊙ r, so ∂L/∂y = r, accumulated in Double.
enum GradientCheck {
  static func random(_ shape: [Int], _ rng: inout SeededGenerator, scale: Double = 1) -> Tensor {
    Tensor(shape: shape, storage: (0..<shape.reduce(1, *)).map { _ in Float(rng.nextNormal() * scale) })
  }

  static func projected(_ y: Tensor, _ r: Tensor) -> Double {
    zip(y.storage, r.storage).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
  }

  /// Checks ∂L/∂x and ∂L/∂θ of `layer` at a random point; returns the worst relative error.
  @discardableResult
  static func check(
    _ layer: any Layer, layout: ParameterLayout, inputShape: [Int], batch: Int = 3,
    seed: UInt64 = 1, step: Float = 1e-2, tolerance: Double = 2e-2,
    sourceLocation: SourceLocation = #_sourceLocation
  ) -> Double {
    check(
      layer.summary, layout: layout, inputShape: inputShape, batch: batch, seed: seed, step: step,
      tolerance: tolerance, sourceLocation: sourceLocation,
      initialize: layer.initialize, forward: layer.forward,
      backward: { layer.backward($0, $1, $2, inputGradient: true)! })
  }

  /// The same check for any forward/backward pair (a `Sequential`, a stage).
  @discardableResult
  static func check<Cache>(
    _ name: String, layout: ParameterLayout, inputShape: [Int], batch: Int = 3,
    seed: UInt64 = 1, step: Float = 1e-2, tolerance: Double = 2e-2,
    sourceLocation: SourceLocation = #_sourceLocation,
    initialize: (ParameterStore, inout SeededGenerator) -> Void,
    forward: (Tensor, ParameterStore) -> (Tensor, Cache),
    backward: (Tensor, Cache, ParameterStore) -> Tensor
  ) -> Double {
    var rng = SeededGenerator(seed: seed)
    let store = ParameterStore(layout: layout)
    initialize(store, &rng)
    // Nudge every parameter (biases start at zero) so no gradient is trivially zero.
    for i in 0..<store.count { store.values[i] += Float(rng.nextNormal() * 0.1) }
    var x = random([batch] + inputShape, &rng)
    let (y, cache) = forward(x, store)
    let r = random(y.shape, &rng)
    let dx = backward(r, cache, store)
    let analyticParams = Array(store.gradients.prefix(store.count))

    func loss() -> Double { projected(forward(x, store).0, r) }
    var worst = 0.0
    func compare(_ analytic: Float, _ numeric: Double, _ what: String) {
      // Relative, per element: a halved or doubled gradient is off by ≥ 50 %. The floor keeps
      // float32 noise in the central difference (~1e-4 here) from counting on tiny gradients.
      let error = abs(Double(analytic) - numeric) / max(1e-2, abs(numeric), abs(Double(analytic)))
      worst = max(worst, error)
      #expect(error < tolerance, "\(name) \(what): analytic \(analytic) numeric \(numeric)", sourceLocation: sourceLocation)
    }
    /// (L(v + h) − L(v − h)) / 2h for one value v, set through `set` and restored afterwards.
    func centralDifference(at value: Float, _ set: (Float) -> Void) -> Double {
      set(value + step)
      let up = loss()
      set(value - step)
      let down = loss()
      set(value)
      return (up - down) / Double(2 * step)
    }
    for i in strideIndices(x.count) {
      compare(dx.storage[i], centralDifference(at: x.storage[i]) { x.storage[i] = $0 }, "dx[\(i)]")
    }
    for i in strideIndices(store.count) {
      compare(analyticParams[i], centralDifference(at: store.values[i]) { store.values[i] = $0 }, "dθ[\(i)]")
    }
    return worst
  }

  /// Checks a scalar loss's gradient with respect to its input `x` by central differences.
  static func checkLoss(
    _ x: Tensor, step: Float = 1e-2, tolerance: Double = 2e-4, sourceLocation: SourceLocation = #_sourceLocation,
    _ loss: (Tensor) -> LossResult
  ) {
    let analytic = loss(x).gradient
    var probe = x
    for i in 0..<x.count {
      let saved = probe.storage[i]
      probe.storage[i] = saved + step
      let up = Double(loss(probe).loss)
      probe.storage[i] = saved - step
      let down = Double(loss(probe).loss)
      probe.storage[i] = saved
      let numeric = (up - down) / Double(2 * step)
      // Absolute below the floor (float32 noise), relative above it: a halved gradient fails.
      let a = Double(analytic.storage[i])
      #expect(
        abs(numeric - a) < tolerance + 2e-2 * max(abs(numeric), abs(a)),
        "[\(i)] numeric \(numeric) vs analytic \(analytic.storage[i])", sourceLocation: sourceLocation)
    }
  }

  /// At most ~60 indices spread over 0..<count.
  static func strideIndices(_ count: Int) -> [Int] {
    guard count > 0 else { return [] }
    return Array(stride(from: 0, to: count, by: max(1, count / 60)))
  }
}
