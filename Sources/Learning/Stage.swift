import NN

/// One gradient-isolated module: a body f_k, an auxiliary head g_k (the classifier on the
/// last stage), ContSup's context encoders when the method supplies context, one flat
/// parameter store and one optimizer.
///
/// The same type trains inside the one-process trainer and inside a worker process.
public final class Stage {
  /// What a stage minimises.
  public enum Objective: Sendable, Equatable {
    /// CE of its head (greedy, contsup, and the last stage of kernel).
    case crossEntropy
    /// α·CE + (1 − α)·KL against the previous stage's belief.
    case sid(SIDConfig)
    /// Gram alignment of its normalised features (kernel, hidden stages; no head).
    case kernel
    /// DRTP (hidden stages; no head): each hidden layer's own projected target
    /// (`TargetProjection`), nothing from the layers above.
    case drtp
  }

  /// Where a ContSup context comes from.
  public enum ContextSource: String, Sendable, CaseIterable {
    /// The raw input image (mode E).
    case image
    /// The previous stage's context-augmented input (mode R1).
    case previousInput
  }

  /// Scale of a context encoder's last layer at initialisation, relative to He.
  public static let contextInitScale: Float = 0.1

  public let index: Int
  public let body: Sequential
  public let head: Head?
  public let encoders: [(source: ContextSource, net: Sequential)]
  public let objective: Objective
  /// The encoders' parameters are the tail of the store, from here; their gradients are
  /// scaled by `encoderGradientScale` before each update.
  let encoderParameterStart: Int
  let encoderGradientScale: Float
  public let store: ParameterStore
  public var optimizer: Optimizer
  /// DRTP: the body layers whose outputs get a projected target (ascending), and each one's
  /// fixed random projection (drawn from this stage's seed, never trained, saved or sent).
  public let projections: [(layer: Int, projection: TargetProjection)]

  /// What arrives at a stage with a batch.
  public struct Input {
    public var x: Tensor
    public var labels: [Int32]
    /// The previous stage's belief (SID); nil means uniform.
    public var belief: Tensor?
    /// The batch's input images (ContSup E).
    public var image: Tensor?
    /// The previous stage's augmented input (ContSup R1).
    public var previousInput: Tensor?

    public init(x: Tensor, labels: [Int32], belief: Tensor? = nil, image: Tensor? = nil, previousInput: Tensor? = nil) {
      (self.x, self.labels, self.belief, self.image, self.previousInput) = (x, labels, belief, image, previousInput)
    }
  }

  /// One forward pass: what goes downstream, and what the local backward needs.
  public struct Pass {
    /// The detached output for the next stage (normalised features for kernel stages).
    public var activations: Tensor
    /// This stage's belief softmax(logits) (SID).
    public var belief: Tensor?
    /// The stage's input after adding its contexts, z = x + Σ Enc(c).
    public var augmentedInput: Tensor
    var h: Tensor
    var bodyCaches: [LayerCache]
    var encoderCaches: [[LayerCache]]
    var headPass: (logits: Tensor, cache: Head.Cache)?
    var previousBelief: Tensor?
    /// DRTP: the outputs of the projected layers.
    var projected: [Tensor] = []
  }

  /// A stage's layers and parameter layout, before any memory is allocated: enough to check
  /// shapes and to learn a stage's output shape.
  public struct Blueprint: Sendable {
    public let body: Sequential
    public let head: Head?
    public let encoders: [(source: ContextSource, net: Sequential)]
    public let objective: Objective
    public let layout: ParameterLayout
    public let encoderParameterStart: Int
    public let encoderGradientScale: Float
    /// DRTP: the body layers that get a projected target, and the number of classes.
    public let projectedLayers: [Int]
    public let classes: Int
  }

  /// Allocates and initialises a stage; parameters are drawn from a stream of `seed` that
  /// belongs to this stage alone, so any process building stage `index` gets the same weights.
  public init(_ blueprint: Blueprint, index: Int, seed: UInt64, optimizer: OptimizerSettings) {
    self.index = index
    body = blueprint.body
    head = blueprint.head
    encoders = blueprint.encoders
    objective = blueprint.objective
    encoderParameterStart = blueprint.encoderParameterStart
    encoderGradientScale = blueprint.encoderGradientScale
    store = ParameterStore(layout: blueprint.layout)
    self.optimizer = Optimizer(optimizer)
    var rng = SeededGenerator(seed: seed, stream: UInt64(index + 1))
    body.initialize(store, &rng)
    head?.initialize(store, &rng)
    for encoder in encoders {
      encoder.net.initialize(store, &rng)
      // The context joins the stage's input as a sum: start it small, so the stage begins
      // as greedy and learns how much context to take (at full He scale the sum doubles the
      // input's variance and SGD diverges on Fashion-MNIST).
      encoder.net.layers.last { $0 is Linear || $0 is Conv2D }?.scaleWeights(by: Self.contextInitScale, store)
    }
    var feedback = SeededGenerator(seed: seed, stream: Self.projectionStream + UInt64(index))
    projections = blueprint.projectedLayers.map { layer in
      (layer, TargetProjection(width: blueprint.body.layers[layer].outputShape.reduce(1, *), classes: blueprint.classes, rng: &feedback))
    }
  }

  /// Where the DRTP projections' random streams start (apart from the weights' streams).
  static let projectionStream: UInt64 = 0x4452_5450_0000

  public var inputShape: [Int] { body.inputShape }
  public var outputShape: [Int] { body.outputShape }
  public var contextSources: [ContextSource] { encoders.map(\.source) }
  public var forwardFLOPsPerSample: Int {
    body.forwardFLOPsPerSample + (head?.forwardFLOPsPerSample ?? 0) + encoders.reduce(0) { $0 + $1.net.forwardFLOPsPerSample }
  }

  // MARK: - Training

  /// Contexts in, body forward, and (SID) the head, whose belief goes downstream.
  public func forward(_ input: Input) -> Pass {
    var z = input.x
    var encoderCaches: [[LayerCache]] = []
    for (source, net) in encoders {
      let context = source == .image ? input.image! : input.previousInput!
      let (e, caches) = net.forward(context, store)
      encoderCaches.append(caches)
      for i in 0..<z.count { z.storage[i] += e.storage[i] }
    }
    let (h, bodyCaches, projected) = body.forward(z, store, keepingOutputsOf: projections.map(\.layer))
    var pass = Pass(
      activations: h, belief: nil, augmentedInput: z, h: h, bodyCaches: bodyCaches, encoderCaches: encoderCaches,
      headPass: nil, previousBelief: input.belief, projected: projected)
    switch objective {
    case .kernel: pass.activations = rowNormalize(h).0
    case .sid:
      let (logits, cache) = head!.forward(h, belief: input.belief, store)
      pass.headPass = (logits, cache)
      pass.belief = softmax(logits)
    case .crossEntropy, .drtp: break
    }
    return pass
  }

  /// The local objective's gradients, added into the store: head (if any), body, encoders.
  /// The input is a constant: nothing flows back to earlier stages.
  public func localGradients(_ pass: Pass, labels: [Int32]) -> LossResult {
    let result: LossResult
    let dh: Tensor
    switch objective {
    case .drtp:
      return projectedTargetGradients(pass, labels: labels)
    case .kernel:
      result = kernelAlignmentLoss(features: pass.h, labels: labels)
      dh = result.gradient
    case .crossEntropy:
      let (logits, cache) = head!.forward(pass.h, belief: nil, store)
      result = softmaxCrossEntropy(logits: logits, labels: labels)
      dh = head!.backward(result.gradient, cache, store)
    case .sid(let settings):
      let (logits, cache) = pass.headPass!
      result = sidLoss(
        logits: logits, labels: labels,
        previousBelief: pass.previousBelief ?? uniformBelief(batch: labels.count, classes: logits.sampleCount),
        alpha: settings.alpha, labelSmoothing: settings.labelSmoothing, direction: settings.direction)
      dh = head!.backward(result.gradient, cache, store)
    }
    let dz = body.backward(dh, pass.bodyCaches, store, inputGradient: !encoders.isEmpty)
    if let dz {
      for (k, encoder) in encoders.enumerated() {
        _ = encoder.net.backward(dz.reshaped([dz.batchSize] + encoder.net.outputShape), pass.encoderCaches[k], store, inputGradient: false)
      }
      if encoderGradientScale != 1 {
        for i in encoderParameterStart..<store.count { store.gradients[i] *= encoderGradientScale }
      }
    }
    return result
  }

  /// DRTP: each projected layer's target, backpropagated through its own block of layers
  /// only (from the layer after the previous projected one); the loss is the sum of the
  /// blocks' surrogate objectives.
  func projectedTargetGradients(_ pass: Pass, labels: [Int32]) -> LossResult {
    var loss: Float = 0
    var start = 0
    for (k, (layer, projection)) in projections.enumerated() {
      let (blockLoss, target) = projection.loss(pass.projected[k], labels: labels)
      loss += blockLoss
      _ = body.backward(target, pass.bodyCaches, store, inputGradient: false, layers: start...layer)
      start = layer + 1
    }
    return LossResult(loss: loss, gradient: Tensor(zeros: [labels.count, 0]), correct: 0)
  }

  /// Forward, local gradients and the optimizer step on one batch (what the trainer does).
  public func trainLocal(_ input: Input, learningRate: Float) -> (Pass, LossResult) {
    let pass = forward(input)
    let result = localGradients(pass, labels: input.labels)
    optimizer.update(store, learningRate: learningRate)
    return (pass, result)
  }

  /// Evaluation: the pass (without training) and the head's logits, if the stage has a head
  /// and `scoringHead` (an e2e inner stage's head is never trained, so it is not run).
  public func infer(_ input: Input, scoringHead: Bool = true) -> (pass: Pass, logits: Tensor?) {
    let pass = forward(input)
    guard scoringHead else { return (pass, nil) }
    if let headPass = pass.headPass { return (pass, headPass.logits) }
    return (pass, head.map { $0.infer(pass.h, belief: nil, store) })
  }

  // MARK: - End to end (the baseline)

  /// Forward through the body for end-to-end training, keeping what backward needs.
  public func forwardBody(_ x: Tensor) -> (Tensor, [LayerCache]) { body.forward(x, store) }

  /// End to end, on the last stage: the head and the loss on `h` (the body's output, with its
  /// caches), then the backward through head and body. `lossScale` weights this batch's loss
  /// (a micro-batch's share of its batch). Returns ∂L/∂input when `inputGradient`.
  public func endToEndTail(
    _ h: Tensor, _ caches: [LayerCache], labels: [Int32], lossScale: Float = 1, inputGradient: Bool
  ) -> (loss: Float, correct: Int, inputGradient: Tensor?) {
    let (logits, headCache) = head!.forward(h, belief: nil, store)
    var result = softmaxCrossEntropy(logits: logits, labels: labels)
    for i in 0..<result.gradient.count { result.gradient.storage[i] *= lossScale }
    let dh = head!.backward(result.gradient, headCache, store)
    let dx = body.backward(dh, caches, store, inputGradient: inputGradient)
    return (result.loss, result.correct, dx)
  }
}
