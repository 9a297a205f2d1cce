import NN

/// A stage's auxiliary classifier g_k: `features` (pooling; mlp-sr's 1×1 convolution) then
/// `classifier` (Linear…→classes). With a belief input (SID), the classifier reads
/// [features ; previous belief]; the belief is a constant, so no gradient goes back into it.
public struct Head: Sendable {
  public let features: Sequential
  public let classifier: Sequential
  /// Classes of the belief appended to the features; 0 without belief input.
  public let beliefWidth: Int

  public struct Cache: Sendable {
    var features: [LayerCache]
    var classifier: [LayerCache]
    var featureShape: [Int]
  }

  /// Lays out a head of `config` on stage outputs of `input` per sample.
  static func make(
    _ config: HeadConfig, input: [Int], classes: Int, beliefInput: Bool, path: String,
    layout: inout ParameterLayout
  ) throws(ConfigError) -> Head {
    /// A hidden ReLU on `shape`, with `config.batchnorm` a BatchNorm named `name` before it.
    func hiddenActivation(_ name: String, _ shape: [Int]) -> [any Layer] {
      (config.batchnorm ? [BatchNorm(name: name, shape: shape, layout: &layout)] : []) + [
        ReLU(shape: shape)
      ]
    }
    var features: [any Layer] = []
    var shape = input
    if config.type == .mlpSR {
      guard input.count == 3 else {
        throw ConfigError(
          path: "\(path).type", "mlp-sr needs image maps [H, W, C]; this stage outputs \(input)")
      }
      let (h, w, c) = (input[0], input[1], input[2])
      let grid = AdaptiveAveragePool2D(
        inputShape: input, outHeight: (h + 3) / 4, outWidth: (w + 3) / 4)!
      let conv = Conv2D(
        name: "head.conv", inputShape: grid.outputShape, filters: c, kernel: 1, stride: 1,
        padding: 0, layout: &layout)!
      let pooled = AdaptiveAveragePool2D(
        inputShape: conv.outputShape, outHeight: min(2, grid.outHeight),
        outWidth: min(2, grid.outWidth))!
      features = [grid, conv] + hiddenActivation("head.bn", conv.outputShape) + [pooled]
      shape = pooled.outputShape
    } else if input.count == 3 {
      let pool = AdaptiveAveragePool2D(inputShape: input, outHeight: 1, outWidth: 1)!
      features = [pool]
      shape = pool.outputShape
    }
    let beliefWidth = beliefInput ? classes : 0
    let width = shape.reduce(1, *) + beliefWidth
    var classifier: [any Layer] = []
    switch config.type {
    case .linear:
      guard !config.batchnorm else {
        throw ConfigError(
          path: "\(path).batchnorm",
          "a linear head has no hidden layer to normalise: use type mlp or mlp-sr")
      }
      classifier = [Linear(name: "head.fc", inputs: width, outputs: classes, layout: &layout)]
    case .mlp, .mlpSR:
      guard config.hidden > 0 else { throw ConfigError(path: "\(path).hidden", "must be positive") }
      classifier = [
        Linear(name: "head.fc1", inputs: width, outputs: config.hidden, layout: &layout)
      ]
      classifier += hiddenActivation("head.bn1", [config.hidden])
      classifier.append(
        Linear(name: "head.fc2", inputs: config.hidden, outputs: classes, layout: &layout))
    }
    return Head(
      features: Sequential(inputShape: input, layers: features),
      classifier: Sequential(inputShape: [width], layers: classifier), beliefWidth: beliefWidth)
  }

  public var forwardFLOPsPerSample: Int {
    features.forwardFLOPsPerSample + classifier.forwardFLOPsPerSample
  }

  func initialize(_ store: ParameterStore, _ rng: inout SeededGenerator) {
    features.initialize(store, &rng)
    classifier.initialize(store, &rng)
  }

  /// Logits [B, C] of stage outputs `h`, with the previous belief when the head reads it.
  public func forward(_ h: Tensor, belief: Tensor?, _ store: ParameterStore) -> (Tensor, Cache) {
    let (f, featureCaches) = features.forward(h, store)
    let (logits, classifierCaches) = classifier.forward(appendBelief(f, belief), store)
    return (
      logits, Cache(features: featureCaches, classifier: classifierCaches, featureShape: f.shape)
    )
  }

  public func infer(_ h: Tensor, belief: Tensor?, _ store: ParameterStore) -> Tensor {
    classifier.infer(appendBelief(features.infer(h, store), belief), store)
  }

  /// ∂L/∂h from ∂L/∂logits; parameter gradients are added into the store.
  public func backward(_ dlogits: Tensor, _ cache: Cache, _ store: ParameterStore) -> Tensor {
    var df = classifier.backward(dlogits, cache.classifier, store, inputGradient: true)!
    if beliefWidth > 0 {  // drop the belief's columns: it is a constant
      let width = df.sampleCount
      let kept = width - beliefWidth
      df = Tensor(
        shape: [df.batchSize, kept],
        storage: (0..<df.batchSize).flatMap { df.storage[($0 * width)..<($0 * width + kept)] })
    }
    return features.backward(
      df.reshaped(cache.featureShape), cache.features, store, inputGradient: true)!
  }

  /// [f flattened ; belief] row by row, or f when there is no belief input.
  func appendBelief(_ f: Tensor, _ belief: Tensor?) -> Tensor {
    guard beliefWidth > 0 else { return f }
    let b = f.batchSize
    let n = f.sampleCount
    let p = belief ?? uniformBelief(batch: b, classes: beliefWidth)
    var out = [Float]()
    out.reserveCapacity(b * (n + beliefWidth))
    for i in 0..<b {
      out += f.storage[(i * n)..<((i + 1) * n)]
      out += p.storage[(i * beliefWidth)..<((i + 1) * beliefWidth)]
    }
    return Tensor(shape: [b, n + beliefWidth], storage: out)
  }
}
