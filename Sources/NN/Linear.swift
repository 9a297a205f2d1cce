/// A fully connected layer, y = x·Wᵀ + b. Any per-sample input shape is read as a vector.
///
/// Shapes: x [B, I] (or [B, …] with I values per sample), W [O, I], b [O], y [B, O].
public struct Linear: Layer {
  public let inputs: Int
  public let outputs: Int
  let affine: Affine

  public init(name: String, inputs: Int, outputs: Int, layout: inout ParameterLayout) {
    self.inputs = inputs
    self.outputs = outputs
    affine = Affine(
      inputs: inputs, outputs: outputs,
      weightOffset: layout.add("\(name).weight", shape: [outputs, inputs]),
      biasOffset: layout.add("\(name).bias", shape: [outputs]))
  }

  public var summary: String { "linear \(inputs)→\(outputs)" }
  public var outputShape: [Int] { [outputs] }
  public var forwardFLOPsPerSample: Int { 2 * inputs * outputs }

  public func initialize(_ store: ParameterStore, _ rng: inout SeededGenerator) {
    heNormal(store.value(at: affine.weightOffset), count: inputs * outputs, fanIn: inputs, &rng)
    store.value(at: affine.biasOffset).update(repeating: 0, count: outputs)
  }

  public func scaleWeights(by factor: Float, _ store: ParameterStore) {
    affine.scaleWeights(by: factor, store)
  }

  public func forward(_ x: Tensor, _ store: ParameterStore) -> (Tensor, LayerCache) {
    precondition(
      x.sampleCount == inputs, "linear: expected \(inputs) inputs per sample, got \(x.sampleCount)")
    let y = affine.forward(x.storage, rows: x.batchSize, store)
    return (Tensor(shape: [x.batchSize, outputs], storage: y), LayerCache(tensors: [x]))
  }

  public func backward(
    _ dy: Tensor, _ cache: LayerCache, _ store: ParameterStore, inputGradient: Bool
  ) -> Tensor? {
    let x = cache.tensors[0]
    let dx = affine.backward(
      dy.storage, x.storage, rows: x.batchSize, store, inputGradient: inputGradient)
    return dx.map { Tensor(shape: x.shape, storage: $0) }
  }
}
