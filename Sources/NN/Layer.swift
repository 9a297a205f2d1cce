/// What a layer's forward pass keeps for its backward pass.
public struct LayerCache: Sendable {
  public var tensors: [Tensor] = []
  public var indices: [Int32] = []
  /// The caches of the layers a layer holds (a residual block's).
  public var children: [LayerCache] = []
  public init(tensors: [Tensor] = [], indices: [Int32] = [], children: [LayerCache] = []) {
    self.tensors = tensors
    self.indices = indices
    self.children = children
  }
}

/// A differentiable layer as a forward/backward pair over a stage's `ParameterStore`.
///
/// A layer is built for a fixed per-sample input shape; it records its parameters' offsets
/// in the store's layout when it is made.
public protocol Layer: Sendable {
  /// A short description, for summaries (`linear 784→1024`).
  var summary: String { get }
  /// The shape of one output sample.
  var outputShape: [Int] { get }
  /// FLOPs of the forward pass per sample (multiply–adds count two).
  var forwardFLOPsPerSample: Int { get }
  /// Draws initial parameters (biases zero).
  func initialize(_ store: ParameterStore, _ rng: inout SeededGenerator)
  /// Multiplies the layer's weights (not biases) by `factor`; no-op for layers without any.
  func scaleWeights(by factor: Float, _ store: ParameterStore)
  /// y = f(x) in training; returns y and what backward needs.
  func forward(_ x: Tensor, _ store: ParameterStore) -> (Tensor, LayerCache)
  /// y = f(x) in evaluation (BatchNorm's running statistics, no dropout); by default the
  /// training forward without its cache.
  func infer(_ x: Tensor, _ store: ParameterStore) -> Tensor
  /// Adds (+=) ∂L/∂θ into the store's gradients and returns ∂L/∂x when `inputGradient`.
  func backward(_ dy: Tensor, _ cache: LayerCache, _ store: ParameterStore, inputGradient: Bool)
    -> Tensor?
}

extension Layer {
  public func initialize(_ store: ParameterStore, _ rng: inout SeededGenerator) {}
  public func scaleWeights(by factor: Float, _ store: ParameterStore) {}
  public var forwardFLOPsPerSample: Int { 0 }
  public func infer(_ x: Tensor, _ store: ParameterStore) -> Tensor { forward(x, store).0 }
}

/// Fills `count` values at `pointer` with He-normal draws: N(0, 2 / fanIn).
func heNormal(
  _ pointer: UnsafeMutablePointer<Float>, count: Int, fanIn: Int, _ rng: inout SeededGenerator
) {
  let std = (2.0 / Double(fanIn)).squareRoot()
  for i in 0..<count { pointer[i] = Float(rng.nextNormal() * std) }
}
