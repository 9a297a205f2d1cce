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
    /// DFA (hidden stages; no head): the same projected layers as DRTP, trained on the last
    /// stage's output error when it arrives (`trainOnError`), nothing at forward time.
    case dfa
    /// DNI (hidden stages): the synthesiser's prediction backpropagated through the body at
    /// once — plus, with `dni.auxiliaryLoss`, the CE gradient of a head of its own; the
    /// synthesiser trains on the next stage's gradient when it arrives.
    case synthetic
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
  public let store: ParameterStore
  public var optimizer: Optimizer
  /// DRTP: the body layers whose outputs get a projected target (ascending), and each one's
  /// fixed random projection (drawn from this stage's seed, never trained, saved or sent).
  public let projections: [(layer: Int, projection: TargetProjection)]
  /// DNI: the synthesiser M predicting ∂L/∂h from h (and the label, cDNI).
  public let synthesiser: Synthesiser?
  /// The number of classes (the width of DFA's output error).
  public let classes: Int

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

    public init(
      x: Tensor, labels: [Int32], belief: Tensor? = nil, image: Tensor? = nil,
      previousInput: Tensor? = nil
    ) {
      (self.x, self.labels, self.belief, self.image, self.previousInput) = (
        x, labels, belief, image, previousInput
      )
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
    /// DRTP: the body layers that get a projected target, and the number of classes.
    public let projectedLayers: [Int]
    public let classes: Int
    public let synthesiser: Synthesiser.Blueprint?
  }

  /// Allocates and initialises a stage; parameters are drawn from a stream of `seed` that
  /// belongs to this stage alone, so any process building stage `index` gets the same weights.
  public init(_ blueprint: Blueprint, index: Int, seed: UInt64, optimizer: OptimizerSettings) {
    self.index = index
    body = blueprint.body
    head = blueprint.head
    encoders = blueprint.encoders
    objective = blueprint.objective
    classes = blueprint.classes
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
      encoder.net.layers.last { $0 is Linear || $0 is Conv2D }?.scaleWeights(
        by: Self.contextInitScale, store)
    }
    var feedback = SeededGenerator(seed: seed, stream: Self.projectionStream + UInt64(index))
    projections = blueprint.projectedLayers.map { layer in
      (
        layer,
        TargetProjection(
          width: blueprint.body.layers[layer].outputShape.reduce(1, *), classes: blueprint.classes,
          rng: &feedback)
      )
    }
    var synthesiserDraws = SeededGenerator(
      seed: seed, stream: Self.synthesiserStream + UInt64(index))
    synthesiser = blueprint.synthesiser.map { Synthesiser($0, rng: &synthesiserDraws) }
  }

  /// Where the DRTP/DFA projections' and the DNI synthesisers' random streams start (apart
  /// from the weights' streams).
  static let projectionStream: UInt64 = 0x4452_5450_0000
  static let synthesiserStream: UInt64 = 0x444E_4900_0000

  public var inputShape: [Int] { body.inputShape }
  public var outputShape: [Int] { body.outputShape }
  public var contextSources: [ContextSource] { encoders.map(\.source) }
  public var forwardFLOPsPerSample: Int {
    body.forwardFLOPsPerSample + (head?.forwardFLOPsPerSample ?? 0)
      + encoders.reduce(0) { $0 + $1.net.forwardFLOPsPerSample }
  }

  // MARK: - Training

  /// Contexts in, body forward, and (SID) the head, whose belief goes downstream. In
  /// evaluation (`training` false) every layer runs its inference form and nothing is kept
  /// for a backward pass.
  public func forward(_ input: Input, training: Bool = true) -> Pass {
    var z = input.x
    var encoderCaches: [[LayerCache]] = []
    for (source, net) in encoders {
      let context = source == .image ? input.image! : input.previousInput!
      let (e, caches) = training ? net.forward(context, store) : (net.infer(context, store), [])
      encoderCaches.append(caches)
      for i in 0..<z.count { z.storage[i] += e.storage[i] }
    }
    let (h, bodyCaches, projected) =
      training
      ? body.forward(z, store, keepingOutputsOf: projections.map(\.layer))
      : (body.infer(z, store), [], [])
    var pass = Pass(
      activations: h, belief: nil, augmentedInput: z, h: h, bodyCaches: bodyCaches,
      encoderCaches: encoderCaches,
      headPass: nil, previousBelief: input.belief, projected: projected)
    switch objective {
    case .kernel: pass.activations = rowNormalize(h).0
    case .sid:
      let (logits, cache) = head!.forward(h, belief: input.belief, store)
      pass.headPass = (logits, cache)
      pass.belief = softmax(logits)
    case .crossEntropy, .drtp, .dfa, .synthetic: break
    }
    return pass
  }

  /// The local objective's gradients, added into the store: head (if any), body, encoders.
  /// The input is a constant: nothing flows back to earlier stages.
  public func localGradients(_ pass: Pass, labels: [Int32]) -> LossResult {
    localStep(pass, labels: labels, inputGradient: false).result
  }

  /// The local objective's gradients, and ∂/∂input when `inputGradient` (DNI returns it to
  /// the previous stage as its synthesiser's target). Under DNI a hidden stage's objective is
  /// its synthesiser's prediction (its loss is reported when the target arrives: 0 here); a
  /// DFA hidden stage has nothing to do before its error arrives (`trainOnError`).
  /// `lossScale` weighs the cross-entropy's gradient (a micro-batch's share of its batch).
  public func localStep(
    _ pass: Pass, labels: [Int32], inputGradient: Bool, lossScale: Float = 1
  ) -> (result: LossResult, inputGradient: Tensor?) {
    let result: LossResult
    let dh: Tensor
    switch objective {
    case .drtp:
      let loss = projectedGradients(
        pass, error: TargetProjection.targetError(labels: labels, classes: classes))
      return (LossResult(loss: loss, gradient: Tensor(zeros: [labels.count, 0]), correct: 0), nil)
    case .dfa:
      preconditionFailure(
        "a dfa hidden stage trains when its error arrives (trainOnError), not at forward time")
    case .synthetic:
      var g = synthesiser!.syntheticGradient(pass.h, labels: labels)
      if head != nil {  // the auxiliary local loss
        let dHead: Tensor
        (result, dHead) = headCrossEntropy(pass.h, labels: labels)
        for i in 0..<g.count { g.storage[i] += dHead.storage[i] }
      } else {
        result = LossResult(loss: 0, gradient: Tensor(zeros: [labels.count, 0]), correct: 0)
      }
      dh = g
    case .kernel:
      result = kernelAlignmentLoss(features: pass.h, labels: labels)
      dh = result.gradient
    case .crossEntropy:
      (result, dh) = headCrossEntropy(pass.h, labels: labels, lossScale: lossScale)
    case .sid(let settings):
      let (logits, cache) = pass.headPass!
      result = sidLoss(
        logits: logits, labels: labels,
        previousBelief: pass.previousBelief
          ?? uniformBelief(batch: labels.count, classes: logits.sampleCount),
        alpha: settings.alpha, labelSmoothing: settings.labelSmoothing,
        direction: settings.direction)
      dh = head!.backward(result.gradient, cache, store)
    }
    let dz = body.backward(
      dh, pass.bodyCaches, store, inputGradient: inputGradient || !encoders.isEmpty)
    if let dz, !encoders.isEmpty {
      for (k, encoder) in encoders.enumerated() {
        _ = encoder.net.backward(
          dz.reshaped([dz.batchSize] + encoder.net.outputShape), pass.encoderCaches[k], store,
          inputGradient: false)
      }
    }
    return (result, inputGradient ? dz : nil)
  }

  /// The head's CE on h, its gradients added into the store; returns the loss and ∂L/∂h.
  func headCrossEntropy(_ h: Tensor, labels: [Int32], lossScale: Float = 1) -> (LossResult, Tensor)
  {
    let (logits, cache) = head!.forward(h, belief: nil, store)
    var result = softmaxCrossEntropy(logits: logits, labels: labels)
    if lossScale != 1 {
      for i in 0..<result.gradient.count { result.gradient.storage[i] *= lossScale }
    }
    return (result, head!.backward(result.gradient, cache, store))
  }

  /// DRTP and DFA: each projected layer's gradient B·e, backpropagated through its own block
  /// of layers only (from the layer after the previous projected one); returns the sum of the
  /// blocks' surrogate objectives. `error` is [B, C].
  func projectedGradients(_ pass: Pass, error: Tensor) -> Float {
    var loss: Float = 0
    var start = 0
    for (k, (layer, projection)) in projections.enumerated() {
      let (blockLoss, target) = projection.loss(pass.projected[k], error: error)
      loss += blockLoss
      _ = body.backward(target, pass.bodyCaches, store, inputGradient: false, layers: start...layer)
      start = layer + 1
    }
    return loss
  }

  /// DFA, when the last stage's output error e [B, C] for a batch this stage forwarded
  /// arrives: every projected layer's gradient from B e, then the update. Returns the
  /// surrogate objective.
  public func trainOnError(_ pass: Pass, error: Tensor, learningRate: Float) -> Float {
    let loss = projectedGradients(pass, error: error)
    optimizer.update(store, learningRate: learningRate)
    return loss
  }

  /// Whether the stage updates when a batch goes forward (all but DFA's hidden stages, which
  /// update when their error arrives).
  public var trainsAtForward: Bool { objective != .dfa }

  /// Forward, local gradients and the optimizer step on one batch (what the trainer does);
  /// with `inputGradient`, also ∂/∂input (DNI's target for the previous stage).
  public func trainLocal(_ input: Input, learningRate: Float, inputGradient: Bool = false) -> (
    Pass, LossResult, Tensor?
  ) {
    let pass = forward(input)
    let (result, dx) = localStep(pass, labels: input.labels, inputGradient: inputGradient)
    optimizer.update(store, learningRate: learningRate)
    return (pass, result, dx)
  }

  /// Evaluation: the pass (without training) and the head's logits, if the stage has a head
  /// and `scoringHead` (an e2e inner stage's head is never trained, so it is not run).
  public func infer(_ input: Input, scoringHead: Bool = true) -> (pass: Pass, logits: Tensor?) {
    let pass = forward(input, training: false)
    guard scoringHead else { return (pass, nil) }
    if let headPass = pass.headPass { return (pass, headPass.logits) }
    return (pass, head.map { $0.infer(pass.h, belief: nil, store) })
  }

  // MARK: - End to end (the baseline)

  /// End to end, a stage before the last: the backward of ∂L/∂output `gradient` through the
  /// body of the batch's kept `pass`, its gradients added into the store; returns ∂L/∂input
  /// when `inputGradient`.
  public func backward(_ pass: Pass, outputGradient gradient: Tensor, inputGradient: Bool)
    -> Tensor?
  {
    body.backward(gradient, pass.bodyCaches, store, inputGradient: inputGradient)
  }
}
