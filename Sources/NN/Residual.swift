/// A residual block inside a stage: y = F(x) + P(x), F the block's layers in order and P the
/// identity when F keeps the shape, else a projection onto F's output shape (a strided 1×1
/// convolution on maps, an affine map on vectors). A ReLU after the sum, as in ResNets, is a
/// layer of its own after the block.
///
/// Shapes: x [B, …in], y, dy [B, …out], dx [B, …in].
public struct Residual: Layer {
  public let body: Sequential
  public let projection: (any Layer)?

  public init(body: Sequential, projection: (any Layer)?) {
    precondition(
      projection.map { $0.outputShape == body.outputShape }
        ?? (body.inputShape == body.outputShape), "residual: shapes do not add up")
    (self.body, self.projection) = (body, projection)
  }

  public var outputShape: [Int] { body.outputShape }
  public var summary: String {
    let layers = body.layers.map(\.summary).joined(separator: ", ")
    return "residual[\(layers)\(projection.map { " + \($0.summary)" } ?? " + x")]"
  }
  public var forwardFLOPsPerSample: Int {
    body.forwardFLOPsPerSample + (projection?.forwardFLOPsPerSample ?? 0) + outputShape.reduce(1, *)
  }

  public func initialize(_ store: ParameterStore, _ rng: inout SeededGenerator) {
    body.initialize(store, &rng)
    projection?.initialize(store, &rng)
  }

  /// F(x) + P(x); the cache holds F's layers' caches, then P's.
  public func forward(_ x: Tensor, _ store: ParameterStore) -> (Tensor, LayerCache) {
    var (y, caches) = body.forward(x, store)
    let (p, projectionCache) = projection.map { $0.forward(x, store) } ?? (x, LayerCache())
    for i in 0..<y.count { y.storage[i] += p.storage[i] }
    return (y, LayerCache(children: caches + [projectionCache]))
  }

  public func infer(_ x: Tensor, _ store: ParameterStore) -> Tensor {
    var y = body.infer(x, store)
    let p = projection.map { $0.infer(x, store) } ?? x
    for i in 0..<y.count { y.storage[i] += p.storage[i] }
    return y
  }

  /// dx = ∂F/∂x dy + ∂P/∂x dy (dy itself for the identity).
  public func backward(
    _ dy: Tensor, _ cache: LayerCache, _ store: ParameterStore, inputGradient: Bool
  ) -> Tensor? {
    let caches = Array(cache.children.dropLast())
    let throughBody = body.backward(dy, caches, store, inputGradient: inputGradient)
    let throughProjection =
      projection.map { $0.backward(dy, cache.children.last!, store, inputGradient: inputGradient) }
      ?? dy
    guard inputGradient, var dx = throughBody, let skip = throughProjection else { return nil }
    for i in 0..<dx.count { dx.storage[i] += skip.storage[i] }
    return dx
  }
}
