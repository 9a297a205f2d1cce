import NN

/// One gradient-isolated module: a body f_k, an auxiliary head g_k (the classifier on the
/// last stage), one flat parameter store and one optimizer.
///
/// The same type trains inside the one-process trainer and, later, inside a worker process.
public final class Stage {
  public let index: Int
  public let body: Sequential
  public let head: Sequential
  public let store: ParameterStore
  public var optimizer: Optimizer

  /// A stage's layers and parameter layout, before any memory is allocated: enough to check
  /// shapes and to learn a stage's output shape.
  public struct Blueprint: Sendable {
    public let body: Sequential
    public let head: Sequential
    public let layout: ParameterLayout
  }

  /// Lays out stage `index` from its config for per-sample inputs of `inputShape`.
  public static func blueprint(_ config: StageConfig, index: Int, inputShape: [Int], classes: Int)
    throws(ConfigError) -> Blueprint
  {
    var layout = ParameterLayout()
    var shape = inputShape
    var layers: [any Layer] = []
    for (j, layerConfig) in config.layers.enumerated() {
      let path = "stages[\(index)].layers[\(j)]"
      let source = j > 0 ? "the previous layer outputs" : index > 0 ? "the previous stage outputs" : "the input is"
      let layer = try makeLayer(layerConfig, name: "body.\(j)", input: shape, source: source, path: path, layout: &layout)
      layers.append(layer)
      shape = layer.outputShape
    }
    let head = try makeHead(config.head, input: shape, classes: classes, path: "stages[\(index)].head", layout: &layout)
    return Blueprint(body: Sequential(inputShape: inputShape, layers: layers), head: head, layout: layout)
  }

  /// Allocates and initialises a stage; parameters are drawn from a stream of `seed` that
  /// belongs to this stage alone, so any process building stage `index` gets the same weights.
  public init(_ blueprint: Blueprint, index: Int, seed: UInt64, optimizer: OptimizerSettings) {
    self.index = index
    body = blueprint.body
    head = blueprint.head
    store = ParameterStore(layout: blueprint.layout)
    self.optimizer = Optimizer(optimizer)
    var rng = SeededGenerator(seed: seed, stream: UInt64(index + 1))
    body.initialize(store, &rng)
    head.initialize(store, &rng)
  }

  public var inputShape: [Int] { body.inputShape }
  public var outputShape: [Int] { body.outputShape }

  // MARK: - Training steps

  /// Greedy local learning on one batch: body and head forward, CE on the head, backward
  /// inside the stage, optimizer step. Returns the body's output (detached: nothing flows
  /// back to earlier stages) and the local loss.
  public func trainLocal(_ x: Tensor, labels: [Int32], learningRate: Float) -> (Tensor, LossResult) {
    let (h, bodyCaches) = body.forward(x, store)
    return (h, learnLocally(h, bodyCaches, labels: labels, learningRate: learningRate))
  }

  /// The second half of `trainLocal`, for a worker that has already sent `h` downstream.
  public func learnLocally(_ h: Tensor, _ bodyCaches: [LayerCache], labels: [Int32], learningRate: Float)
    -> LossResult
  {
    let result = localGradients(h, bodyCaches, labels: labels)
    optimizer.update(store, learningRate: learningRate)
    return result
  }

  /// Head forward, CE against the labels, backward through head and body: adds the local
  /// objective's gradients into the store (the input is a constant: nothing flows out).
  public func localGradients(_ h: Tensor, _ bodyCaches: [LayerCache], labels: [Int32]) -> LossResult {
    let (logits, headCaches) = head.forward(h, store)
    let result = softmaxCrossEntropy(logits: logits, labels: labels)
    if let dh = head.backward(result.gradient, headCaches, store, inputGradient: true) {
      _ = body.backward(dh, bodyCaches, store, inputGradient: false)
    }
    return result
  }

  /// Forward through the body for end-to-end training, keeping what backward needs.
  public func forwardBody(_ x: Tensor) -> (Tensor, [LayerCache]) { body.forward(x, store) }

  /// Logits of the head on a body output, with caches.
  public func forwardHead(_ h: Tensor) -> (Tensor, [LayerCache]) { head.forward(h, store) }

  /// Evaluation: the body's output and the head's logits, no caches kept.
  public func infer(_ x: Tensor) -> (output: Tensor, logits: Tensor) {
    let h = body.infer(x, store)
    return (h, head.infer(h, store))
  }

  public var forwardFLOPsPerSample: Int { body.forwardFLOPsPerSample + head.forwardFLOPsPerSample }

  // MARK: - Building

  static func makeLayer(
    _ config: LayerConfig, name: String, input: [Int], source: String, path: String,
    layout: inout ParameterLayout
  ) throws(ConfigError) -> any Layer {
    func need(_ value: Int?, _ key: String) throws(ConfigError) -> Int {
      guard let value else { throw ConfigError(path: path, "\(config.type.rawValue) needs `\(key)`") }
      guard value > 0 else { throw ConfigError(path: path, "`\(key)` must be positive, got \(value)") }
      return value
    }
    func needMap() throws(ConfigError) {
      guard input.count == 3 else {
        throw ConfigError(path: path, "\(config.type.rawValue) needs an image map [H, W, C], \(source) \(input)")
      }
    }
    switch config.type {
    case .linear:
      let inputs = input.reduce(1, *)
      if let expected = config.in, expected != inputs {
        throw ConfigError(path: path, "linear expects \(expected) inputs, \(source) \(inputs)")
      }
      return Linear(name: name, inputs: inputs, outputs: try need(config.out, "out"), layout: &layout)
    case .conv:
      try needMap()
      if let expected = config.in, expected != input[2] {
        throw ConfigError(path: path, "conv expects \(expected) channels, \(source) \(input[2])")
      }
      let kernel = config.kernel ?? 3
      guard let conv = Conv2D(
        name: name, inputShape: input, filters: try need(config.out, "out"), kernel: kernel,
        stride: config.stride ?? 1, padding: config.padding ?? kernel / 2, layout: &layout)
      else {
        throw ConfigError(path: path, "conv kernel \(kernel) does not fit \(source) \(input) (check kernel, stride, padding)")
      }
      return conv
    case .relu:
      return ReLU(shape: input)
    case .flatten:
      return Flatten(inputShape: input)
    case .maxpool, .avgpool:
      try needMap()
      let size = config.size ?? 2
      let stride = config.stride ?? size
      let pool: (any Layer)? =
        config.type == .maxpool
        ? MaxPool2D(inputShape: input, size: size, stride: stride)
        : AveragePool2D(inputShape: input, size: size, stride: stride)
      guard let pool else {
        throw ConfigError(path: path, "\(config.type.rawValue) window \(size)/\(stride) does not fit \(source) \(input)")
      }
      return pool
    case .gap:
      try needMap()
      return AveragePool2D(globalOver: input)!
    }
  }

  static func makeHead(
    _ config: HeadConfig, input: [Int], classes: Int, path: String, layout: inout ParameterLayout
  ) throws(ConfigError) -> Sequential {
    var layers: [any Layer] = []
    var features = input.reduce(1, *)
    if input.count == 3, let pool = AveragePool2D(globalOver: input) {
      layers.append(pool)
      features = input[2]
    }
    switch config.type {
    case .linear:
      layers.append(Linear(name: "head.fc", inputs: features, outputs: classes, layout: &layout))
    case .mlp:
      guard config.hidden > 0 else { throw ConfigError(path: "\(path).hidden", "must be positive") }
      layers.append(Linear(name: "head.fc1", inputs: features, outputs: config.hidden, layout: &layout))
      layers.append(ReLU(shape: [config.hidden]))
      layers.append(Linear(name: "head.fc2", inputs: config.hidden, outputs: classes, layout: &layout))
    }
    return Sequential(inputShape: input, layers: layers)
  }
}
