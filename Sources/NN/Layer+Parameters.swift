/// What a layer's parameters hold, read out of a store for those who write a trained network
/// in another format (the ONNX export).

extension Linear {
  /// W [O, I] and b [O].
  public func parameters(_ store: ParameterStore) -> (weight: [Float], bias: [Float]) {
    affine.parameters(store)
  }
}

extension Conv2D {
  /// W [F, k, k, C] and b [F].
  public func parameters(_ store: ParameterStore) -> (weight: [Float], bias: [Float]) {
    affine.parameters(store)
  }
}

extension Affine {
  func parameters(_ store: ParameterStore) -> (weight: [Float], bias: [Float]) {
    (
      Array(UnsafeBufferPointer(start: store.value(at: weightOffset), count: inputs * outputs)),
      Array(UnsafeBufferPointer(start: store.value(at: biasOffset), count: outputs))
    )
  }
}

extension BatchNorm {
  /// γ, β and the running mean and variance, [C] each: in evaluation
  /// y = γ (x − mean) / √(variance + ε) + β.
  public func statistics(_ store: ParameterStore) -> (
    gamma: [Float], beta: [Float], mean: [Float], variance: [Float]
  ) {
    func read(_ offset: Int) -> [Float] {
      Array(UnsafeBufferPointer(start: store.value(at: offset), count: channels))
    }
    return (read(gamma), read(beta), read(runningMean), read(runningVariance))
  }
}
