import NN

/// Laying out a stage from the config: layers, head, context encoders and objective, with
/// every shape checked and every error naming its key path.
extension Stage {
  /// The shapes a stage is built for.
  public struct Shapes: Sendable {
    /// One sample of this stage's input.
    public var input: [Int]
    /// One sample of the data set's images (ContSup E).
    public var image: [Int]
    /// One sample of the previous stage's input (ContSup R1); nil for stage 0.
    public var previousInput: [Int]?
    public var classes: Int
    public var isLast: Bool
  }

  /// Lays out stage `index` of `config` for the given shapes.
  public static func blueprint(_ config: RunConfig, index: Int, shapes: Shapes) throws(ConfigError)
    -> Blueprint
  {
    let stageConfig = config.stages[index]
    var layout = ParameterLayout()
    let layers = try makeLayers(
      stageConfig.layers, names: "body", input: shapes.input,
      source: index > 0 ? "the previous stage outputs" : "the input is",
      path: "stages[\(index)].layers",
      seed: { Self.layerSeed(config.seed, stage: index, layer: $0) }, layout: &layout)
    let shape = layers.last?.outputShape ?? shapes.input
    let objective = config.method.objective(isLast: shapes.isLast, sid: config.sid)
    let projectedLayers =
      objective == .drtp || objective == .dfa
      ? try projectionPoints(layers, stage: index, method: config.method) : []
    let head: Head? =
      [.kernel, .drtp, .dfa].contains(objective)
        || (objective == .synthetic && !config.dni.auxiliaryLoss)
      ? nil
      : try Head.make(
        stageConfig.head, input: shape, classes: shapes.classes,
        beliefInput: config.method == .sid && config.sid.beliefInput, path: "stages[\(index)].head",
        layout: &layout)
    var encoders: [(source: ContextSource, net: Sequential)] = []
    if config.method == .contsup, index > 0 {
      let mode = config.contsup.mode
      if mode == .E || mode == .R1E {
        encoders.append(
          (
            .image,
            try contextEncoder(
              from: shapes.image, to: shapes.input, name: "context.image", skip: false,
              stage: index, layout: &layout)
          ))
      }
      if mode == .R1 || mode == .R1E, let previous = shapes.previousInput {
        encoders.append(
          (
            .previousInput,
            try contextEncoder(
              from: previous, to: shapes.input, name: "context.previous", skip: true, stage: index,
              layout: &layout)
          ))
      }
    }
    return Blueprint(
      body: Sequential(inputShape: shapes.input, layers: layers), head: head, encoders: encoders,
      objective: objective, layout: layout, projectedLayers: projectedLayers,
      classes: shapes.classes,
      synthesiser: objective == .synthetic
        ? Synthesiser.blueprint(
          config.dni, conditioned: config.method == .cdni, shape: shape, classes: shapes.classes,
          optimizer: config.optimizer.rule) : nil)
  }

  /// DRTP's and DFA's projected layers in a hidden stage: each nonlinearity (a hidden layer's
  /// output),
  /// and the body's last layer when weights follow the last one. Every layer with weights gets
  /// its update from exactly one projection.
  static func projectionPoints(_ layers: [any Layer], stage: Int, method: Method)
    throws(ConfigError) -> [Int]
  {
    let hasWeights = { (layer: any Layer) in
      layer is Linear || layer is Conv2D || layer is Residual || layer is BatchNorm
    }
    var points = layers.indices.filter { layers[$0] is ReLU || layers[$0] is Tanh }
    if let lastWeights = layers.lastIndex(where: hasWeights), lastWeights > (points.last ?? -1) {
      points.append(layers.count - 1)
    }
    guard !points.isEmpty, layers.contains(where: hasWeights) else {
      throw ConfigError(
        path: "stages[\(stage)].layers",
        "a \(method.rawValue) hidden stage needs a layer with weights (linear or conv) to train")
    }
    return points
  }

  /// ContSup's Enc_k, mapping a context of shape `from` onto the stage's input shape `to`:
  /// Linear for vector inputs; for maps conv3×3(→12) + ReLU, conv3×3(12→C) + ReLU, average
  /// pool to the input's size (a skip from the previous stage: 1×1 conv + ReLU + pool).
  static func contextEncoder(
    from: [Int], to: [Int], name: String, skip: Bool, stage: Int, layout: inout ParameterLayout
  )
    throws(ConfigError) -> Sequential
  {
    if to.count != 3 {
      let linear = Linear(
        name: "\(name).fc", inputs: from.reduce(1, *), outputs: to.reduce(1, *), layout: &layout)
      return Sequential(inputShape: from, layers: [linear])
    }
    guard from.count == 3, from[0] >= to[0], from[1] >= to[1] else {
      throw ConfigError(
        path: "contsup.mode",
        "stage \(stage) takes maps \(to) but its context is \(from): ContSup needs a context at "
          + "least as large as the stage input"
      )
    }
    var layers: [any Layer] = []
    var shape = from
    let convs: [(Int, Int)] = skip ? [(to[2], 1)] : [(12, 3), (to[2], 3)]
    for (j, (filters, kernel)) in convs.enumerated() {
      let conv = Conv2D(
        name: "\(name).conv\(j)", inputShape: shape, filters: filters, kernel: kernel, stride: 1,
        padding: kernel / 2, layout: &layout)!
      layers += [conv, ReLU(shape: conv.outputShape)]
      shape = conv.outputShape
    }
    layers.append(AdaptiveAveragePool2D(inputShape: shape, outHeight: to[0], outWidth: to[1])!)
    return Sequential(inputShape: from, layers: layers)
  }

  /// The seed of what layer `layer` of stage `stage` draws while training (dropout's masks),
  /// apart from the weights' streams.
  static func layerSeed(_ seed: UInt64, stage: Int, layer: Int) -> UInt64 {
    var draws = SeededGenerator(
      seed: seed, stream: 0x4452_4F50_0000_0000 + UInt64(stage << 16 | layer))
    return draws.next()
  }

  /// Layers in order, each reading the one before (the first reads what `source` describes),
  /// named `NAMES.i`, their config paths `PATH[i]`, layer i drawing from `seed(i)`.
  static func makeLayers(
    _ configs: [LayerConfig], names: String, input: [Int], source: String, path: String,
    seed: (Int) -> UInt64,
    layout: inout ParameterLayout
  ) throws(ConfigError) -> [any Layer] {
    var layers: [any Layer] = []
    for (i, layerConfig) in configs.enumerated() {
      layers.append(
        try makeLayer(
          layerConfig, name: "\(names).\(i)", input: layers.last?.outputShape ?? input,
          source: i > 0 ? "the previous layer outputs" : source,
          path: "\(path)[\(i)]", seed: seed(i), layout: &layout))
    }
    return layers
  }

  /// One body layer from its config; `seed` draws what the layer draws while training
  /// (dropout's masks).
  static func makeLayer(
    _ config: LayerConfig, name: String, input: [Int], source: String, path: String, seed: UInt64,
    layout: inout ParameterLayout
  ) throws(ConfigError) -> any Layer {
    func need(_ value: Int?, _ key: String) throws(ConfigError) -> Int {
      guard let value else {
        throw ConfigError(path: path, "\(config.type.rawValue) needs `\(key)`")
      }
      guard value > 0 else {
        throw ConfigError(path: path, "`\(key)` must be positive, got \(value)")
      }
      return value
    }
    func needMap() throws(ConfigError) {
      guard input.count == 3 else {
        throw ConfigError(
          path: path, "\(config.type.rawValue) needs an image map [H, W, C], \(source) \(input)")
      }
    }
    switch config.type {
    case .linear:
      let inputs = input.reduce(1, *)
      if let expected = config.in, expected != inputs {
        throw ConfigError(path: path, "linear expects \(expected) inputs, \(source) \(inputs)")
      }
      return Linear(
        name: name, inputs: inputs, outputs: try need(config.out, "out"), layout: &layout)
    case .conv:
      try needMap()
      if let expected = config.in, expected != input[2] {
        throw ConfigError(path: path, "conv expects \(expected) channels, \(source) \(input[2])")
      }
      let kernel = config.kernel ?? 3
      guard
        let conv = Conv2D(
          name: name, inputShape: input, filters: try need(config.out, "out"), kernel: kernel,
          stride: config.stride ?? 1, padding: config.padding ?? kernel / 2, layout: &layout)
      else {
        throw ConfigError(
          path: path,
          "conv kernel \(kernel) does not fit \(source) \(input) (check kernel, stride, padding)")
      }
      return conv
    case .relu:
      return ReLU(shape: input)
    case .tanh:
      return Tanh(shape: input)
    case .flatten:
      return Flatten(inputShape: input)
    case .batchnorm:
      return BatchNorm(name: name, shape: input, layout: &layout)
    case .dropout:
      guard let rate = config.rate, (0..<1).contains(rate) else {
        throw ConfigError(
          path: path, "dropout needs `rate` in [0, 1), the probability of dropping a value")
      }
      return Dropout(name: name, shape: input, rate: rate, seed: seed, layout: &layout)
    case .residual:
      return try residual(
        config, name: name, input: input, source: source, path: path, seed: seed, layout: &layout)
    case .maxpool, .avgpool:
      try needMap()
      let size = config.size ?? 2
      let stride = config.stride ?? size
      let pool: (any Layer)? =
        config.type == .maxpool
        ? MaxPool2D(inputShape: input, size: size, stride: stride)
        : AveragePool2D(inputShape: input, size: size, stride: stride)
      guard let pool else {
        throw ConfigError(
          path: path,
          "\(config.type.rawValue) window \(size)/\(stride) does not fit \(source) \(input)")
      }
      return pool
    case .gap:
      try needMap()
      return AdaptiveAveragePool2D(inputShape: input, outHeight: 1, outWidth: 1)!
    }
  }

  /// A residual block: its layers in order (named `NAME.i`), and a projection `NAME.proj`
  /// when they change the shape — a 1×1 convolution with the stride that shrinks the map, or
  /// an affine map on vectors.
  static func residual(
    _ config: LayerConfig, name: String, input: [Int], source: String, path: String, seed: UInt64,
    layout: inout ParameterLayout
  ) throws(ConfigError) -> Residual {
    guard let inner = config.layers, !inner.isEmpty else {
      throw ConfigError(path: path, "residual needs `layers`, the block's layers in order")
    }
    let body = Sequential(
      inputShape: input,
      layers: try makeLayers(
        inner, names: name, input: input, source: source, path: "\(path).layers",
        seed: { i in
          var draws = SeededGenerator(seed: seed, stream: UInt64(i))
          return draws.next()
        }, layout: &layout))
    let shape = body.outputShape
    guard shape != input else { return Residual(body: body, projection: nil) }
    if input.count == 3, shape.count == 3, shape[0] > 0, shape[1] > 0 {
      // The stride whose 1×1 conv lands on F's map: (in − 1) / s + 1 = out (7 → 4 at 2 too).
      let stride = (input[0] + shape[0] - 1) / shape[0]
      if (input[0] - 1) / stride + 1 == shape[0], (input[1] - 1) / stride + 1 == shape[1],
        let conv = Conv2D(
          name: "\(name).proj", inputShape: input, filters: shape[2], kernel: 1, stride: stride,
          padding: 0, layout: &layout)
      {
        return Residual(body: body, projection: conv)
      }
    }
    if input.count == 1, shape.count == 1 {
      return Residual(
        body: body,
        projection: Linear(
          name: "\(name).proj", inputs: input[0], outputs: shape[0], layout: &layout))
    }
    throw ConfigError(
      path: path,
      "residual: its layers map \(input) to \(shape), which neither the identity nor a projection "
        + "(a strided 1×1 conv on maps, an affine map on vectors) can add to"
    )
  }
}
