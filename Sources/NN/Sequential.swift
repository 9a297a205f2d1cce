/// Layers applied in order; forward keeps every layer's cache, backward walks them back.
public struct Sequential: Sendable {
  public var layers: [any Layer]
  public let inputShape: [Int]

  public init(inputShape: [Int], layers: [any Layer] = []) {
    self.inputShape = inputShape
    self.layers = layers
  }

  /// The shape of one output sample.
  public var outputShape: [Int] { layers.last?.outputShape ?? inputShape }
  public var forwardFLOPsPerSample: Int { layers.reduce(0) { $0 + $1.forwardFLOPsPerSample } }

  public func initialize(_ store: ParameterStore, _ rng: inout SeededGenerator) {
    for layer in layers { layer.initialize(store, &rng) }
  }

  public func forward(_ x: Tensor, _ store: ParameterStore) -> (Tensor, [LayerCache]) {
    var h = x
    var caches: [LayerCache] = []
    caches.reserveCapacity(layers.count)
    for layer in layers {
      let (y, cache) = layer.forward(h, store)
      caches.append(cache)
      h = y
    }
    return (h, caches)
  }

  /// Forward without keeping caches (evaluation).
  public func infer(_ x: Tensor, _ store: ParameterStore) -> Tensor {
    layers.reduce(x) { h, layer in layer.forward(h, store).0 }
  }

  /// Backward through every layer; returns ∂L/∂x when `inputGradient`. The first layer is
  /// not asked for its input gradient unless the caller needs it.
  public func backward(
    _ dy: Tensor, _ caches: [LayerCache], _ store: ParameterStore, inputGradient: Bool
  ) -> Tensor? {
    var grad: Tensor? = dy
    for index in layers.indices.reversed() {
      guard let g = grad else { return nil }
      let needed = index > 0 || inputGradient
      grad = layers[index].backward(g, caches[index], store, inputGradient: needed)
    }
    return inputGradient ? grad : nil
  }
}
