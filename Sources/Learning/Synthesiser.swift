import NN

/// DNI's synthetic-gradient model M_k of one stage (Jaderberg et al. 2017): from the stage's
/// output h — and for cDNI the one-hot label — it predicts the gradient of the loss at h, so
/// the stage updates at once instead of waiting for the true gradient. It has its own
/// parameters and optimizer: it trains when its target arrives, not with the stage's batch.
///
/// Shapes: h [B, n] (vectors) or [B, H, W, C] (maps); its input is [B, n + classes] or
/// [B, H, W, C + classes] (the label as constant planes) when conditioned; its output h's shape.
///
/// Scale: M predicts t = B·∂L/∂h, the gradient of each sample's own loss (O(1) whatever the
/// batch size); the stage backpropagates ĝ = M(h)/B, the gradient of the batch mean. On a
/// target δ̂ (the next stage's gradient at its input, of the batch mean) M regresses with
///
///     L_M = (1/2B) Σ_i ‖M(h_i) − B·δ̂_i‖²        ∂L_M/∂M(h_i) = (M(h_i) − B·δ̂_i) / B
///
/// Its output layer starts at zero: a fresh synthesiser predicts no gradient.
public final class Synthesiser {
  public struct Blueprint: Sendable {
    public let net: Sequential
    public let conditioned: Bool
    public let classes: Int
    public let layout: ParameterLayout
    public let optimizer: OptimizerSettings
    public let learningRate: Float
  }

  public let net: Sequential
  public let conditioned: Bool
  public let classes: Int
  public let store: ParameterStore
  public var optimizer: Optimizer
  /// Its own constant rate (`dni.learningRate`), whatever the stages' schedule.
  public let learningRate: Float

  /// M for outputs of `shape`: affine maps on vectors, 3×3 convolutions on maps (`hidden`
  /// channels there at most 4 × the map's); it learns with `config.optimizer` at
  /// `config.learningRate`, without weight decay; the rest (momentum, Nesterov, Adam's betas)
  /// as the run's `optimizer`.
  public static func blueprint(
    _ config: DNIConfig, conditioned: Bool, shape: [Int], classes: Int,
    optimizer run: OptimizerSettings = OptimizerSettings()
  ) -> Blueprint {
    var layout = ParameterLayout()
    let extra = conditioned ? classes : 0
    var layers: [any Layer] = []
    let inputShape: [Int]
    if shape.count == 3 {
      inputShape = [shape[0], shape[1], shape[2] + extra]
      var from = inputShape
      let widths =
        config.synthesiser == .mlp ? [min(config.hidden, 4 * shape[2]), shape[2]] : [shape[2]]
      for (j, width) in widths.enumerated() {
        let conv = Conv2D(
          name: "synthesiser.conv\(j)", inputShape: from, filters: width, kernel: 3, stride: 1,
          padding: 1, layout: &layout)!
        layers.append(conv)
        if j + 1 < widths.count { layers.append(ReLU(shape: conv.outputShape)) }
        from = conv.outputShape
      }
    } else {
      let n = shape.reduce(1, *)
      inputShape = [n + extra]
      let widths = config.synthesiser == .mlp ? [config.hidden, n] : [n]
      var from = n + extra
      for (j, width) in widths.enumerated() {
        layers.append(
          Linear(name: "synthesiser.fc\(j)", inputs: from, outputs: width, layout: &layout))
        if j + 1 < widths.count { layers.append(ReLU(shape: [width])) }
        from = width
      }
    }
    var optimizer = run
    (optimizer.kind, optimizer.weightDecay, optimizer.rateScales) = (config.optimizer, 0, [:])
    return Blueprint(
      net: Sequential(inputShape: inputShape, layers: layers), conditioned: conditioned,
      classes: classes, layout: layout, optimizer: optimizer,
      learningRate: config.learningRate)
  }

  public init(_ blueprint: Blueprint, rng: inout SeededGenerator) {
    net = blueprint.net
    conditioned = blueprint.conditioned
    classes = blueprint.classes
    store = ParameterStore(layout: blueprint.layout)
    optimizer = Optimizer(blueprint.optimizer)
    learningRate = blueprint.learningRate
    net.initialize(store, &rng)
    net.layers.last!.scaleWeights(by: 0, store)  // biases start at zero too
  }

  /// M's input: h/√n (n values per sample), with the one-hot label appended per sample
  /// (per pixel on maps) for cDNI. The fixed scale keeps the regression's curvature — the
  /// largest eigenvalue of E[x xᵀ], at most the mean square activation — near 1 while
  /// activations are O(1), so M trains at the learning rate the stages use (on raw ReLU
  /// features ‖h‖² is in the hundreds and SGD at 0.01 diverges); unlike scaling each sample to
  /// unit length, it leaves M able to see activations grow (with per-sample scaling, cDNI on
  /// model A diverged within 5 epochs at 0.01 and 0.003). M's prediction is not
  /// differentiated with respect to h (the stage backpropagates ĝ as a constant).
  func input(_ h: Tensor, labels: [Int32]) -> Tensor {
    let batch = h.batchSize
    let n = h.sampleCount
    let width = h.shape.last!
    let pixels = n / width
    let wide = width + (conditioned ? classes : 0)
    let scale = 1 / Float(n).squareRoot()
    var x = Tensor(zeros: [batch] + net.inputShape)
    for i in 0..<batch {
      for p in 0..<pixels {
        let from = (i * pixels + p) * width
        let to = (i * pixels + p) * wide
        for j in 0..<width { x.storage[to + j] = h.storage[from + j] * scale }
        if conditioned { x.storage[to + width + Int(labels[i])] = 1 }
      }
    }
    return x
  }

  /// ĝ = M(h)/B, the synthetic gradient of the batch-mean loss at h (h's shape).
  public func syntheticGradient(_ h: Tensor, labels: [Int32]) -> Tensor {
    var g = net.infer(input(h, labels: labels), store).reshaped(h.shape)
    let scale = 1 / Float(h.batchSize)
    for i in 0..<g.count { g.storage[i] *= scale }
    return g
  }

  /// Adds ∂L_M/∂θ for the target δ̂ (h's shape, a batch-mean gradient) into the store and
  /// returns L_M.
  public func regressionGradients(_ h: Tensor, labels: [Int32], target: Tensor) -> Float {
    precondition(target.shape == h.shape, "synthesiser: target \(target.shape) for h \(h.shape)")
    let batch = Float(h.batchSize)
    let (prediction, caches) = net.forward(input(h, labels: labels), store)
    var dy = prediction
    var loss: Float = 0
    for i in 0..<dy.count {
      let residual = prediction.storage[i] - batch * target.storage[i]
      loss += residual * residual
      dy.storage[i] = residual / batch
    }
    _ = net.backward(dy, caches, store, inputGradient: false)
    return loss / (2 * batch)
  }

  /// One regression step on a target at the synthesiser's own rate; returns L_M before the step.
  public func train(_ h: Tensor, labels: [Int32], target: Tensor) -> Float {
    let loss = regressionGradients(h, labels: labels, target: target)
    optimizer.update(store, learningRate: learningRate)
    return loss
  }
}
