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
    let (h, caches, _) = forward(x, store, keepingOutputsOf: [])
    return (h, caches)
  }

  /// Forward, also returning the outputs of the layers at `keep` (ascending), for objectives
  /// that act inside the stack (DRTP's per-layer targets).
  public func forward(_ x: Tensor, _ store: ParameterStore, keepingOutputsOf keep: [Int]) -> (
    Tensor, [LayerCache], [Tensor]
  ) {
    var h = x
    var caches: [LayerCache] = []
    var kept: [Tensor] = []
    caches.reserveCapacity(layers.count)
    for (index, layer) in layers.enumerated() {
      let (y, cache) = layer.forward(h, store)
      caches.append(cache)
      h = y
      if keep.contains(index) { kept.append(y) }
    }
    return (h, caches, kept)
  }

  /// Evaluation: every layer's inference form, no caches kept.
  public func infer(_ x: Tensor, _ store: ParameterStore) -> Tensor {
    layers.reduce(x) { h, layer in layer.infer(h, store) }
  }

  /// Backward through every layer (or the layers `range`, `dy` being ∂L/∂ of the last one's
  /// output); returns ∂L/∂ of the first one's input when `inputGradient`. The first layer is
  /// not asked for its input gradient unless the caller needs it.
  public func backward(
    _ dy: Tensor, _ caches: [LayerCache], _ store: ParameterStore, inputGradient: Bool,
    layers range: ClosedRange<Int>? = nil
  ) -> Tensor? {
    guard !layers.isEmpty else { return inputGradient ? dy : nil }
    let range = range ?? 0...(layers.count - 1)
    var grad: Tensor? = dy
    for index in range.reversed() {
      guard let g = grad else { return nil }
      let needed = index > range.lowerBound || inputGradient
      grad = layers[index].backward(g, caches[index], store, inputGradient: needed)
    }
    return inputGradient ? grad : nil
  }
}
