import Datasets
import Foundation
import NN
import TestSupport
import Testing

@testable import Learning

func methodConfig(_ method: Method, mode: ContextMode = .E, beliefInput: Bool = false, maps: Bool = false, epochs: Int = 3) -> RunConfig {
  var config = smallConfig(method, epochs: epochs)
  config.contsup.mode = mode
  config.sid.beliefInput = beliefInput
  config.training.batchSize = 32
  if maps {
    config.stages = [
      StageConfig(layers: [LayerConfig(.conv, out: 4), LayerConfig(.relu)]),
      StageConfig(layers: [LayerConfig(.conv, out: 6), LayerConfig(.relu), LayerConfig(.maxpool)]),
      StageConfig(layers: [LayerConfig(.conv, out: 6), LayerConfig(.relu)], head: { var h = HeadConfig(); h.type = .mlpSR; h.hidden = 16; return h }()),
    ]
  }
  return config
}

/// Every method's local objective: the gradient a stage adds to its store matches central
/// differences of its local loss (heads, belief input, context encoders, kernel loss).
@Suite("Local objectives: stage gradients match central differences")
struct StageGradientTests {
  static let cases: [(String, RunConfig)] = [
    ("greedy mlp", methodConfig(.greedy)),
    ("greedy maps + mlp-sr head", methodConfig(.greedy, maps: true)),
    ("sid", methodConfig(.sid)),
    ("sid, belief input, reverse KL", {
      var c = methodConfig(.sid, beliefInput: true)
      c.sid.direction = .reverse
      c.sid.labelSmoothing = 0.1
      return c
    }()),
    ("contsup E", methodConfig(.contsup, mode: .E)),
    ("contsup R1E", methodConfig(.contsup, mode: .R1E)),
    ("contsup R1E on maps", methodConfig(.contsup, mode: .R1E, maps: true)),
    ("drtp mlp", methodConfig(.drtp)),
    ("drtp maps", methodConfig(.drtp, maps: true)),
    ("kernel", methodConfig(.kernel)),
    ("greedy maps + mlp-sr head with BatchNorm, and an mlp head with BatchNorm", {
      var c = methodConfig(.greedy, maps: true)
      c.stages[2].head.batchnorm = true
      (c.stages[0].head.type, c.stages[0].head.hidden, c.stages[0].head.batchnorm) = (.mlp, 12, true)
      return c
    }()),
    ("greedy maps with batchnorm and residual blocks", {
      var c = methodConfig(.greedy, maps: true)
      var block = LayerConfig(.residual)
      var strided = LayerConfig(.conv, out: 6)
      strided.stride = 2
      block.layers = [strided, LayerConfig(.batchnorm), LayerConfig(.relu)]  // a projection
      for k in c.stages.indices { c.stages[k].layers.insert(LayerConfig(.batchnorm), at: 1) }
      c.stages[1].layers.insert(block, at: 0)
      return c
    }()),
  ]

  @Test(arguments: cases.indices)
  func stageGradient(caseIndex: Int) throws {
    var (name, config) = Self.cases[caseIndex]
    config.contsup.encoderLearningRateScale = 1  // the true gradient; the scale is a step size
    let (train, _) = try config.loadData()
    let stages = try config.buildStages(sampleShape: train.sampleShape, classes: train.classes)
    let batch = train.batch(ArraySlice(0..<12))
    var previous: Stage.Pass?
    for stage in stages {
      let input = config.handoffs(stages)[stage.index].input(after: previous, batch: batch)
      stage.store.zeroGradients()
      let pass = stage.forward(input)
      _ = stage.localGradients(pass, labels: batch.labels)
      let analytic = Array(stage.store.gradients.prefix(stage.store.count))
      func loss() -> Double {
        let p = stage.forward(input)
        stage.store.zeroGradients()
        return Double(stage.localGradients(p, labels: batch.labels).loss)
      }
      // Per parameter tensor (body, head, encoders alike): its three largest gradients, each
      // within 15 % of the central difference — a halved or zeroed gradient is off by 50 %.
      // Below 2e-3 the float32 loss's rounding (~1e-4 here) would dominate the difference.
      var worst = (error: 0.0, name: "")
      let step: Float = 1e-3
      for spec in stage.store.layout.specs {
        let largest = (spec.offset..<(spec.offset + spec.count)).sorted { abs(analytic[$0]) > abs(analytic[$1]) }.prefix(3)
        for i in largest where abs(analytic[i]) > 2e-3 {
          let saved = stage.store.values[i]
          stage.store.values[i] = saved + step
          let up = loss()
          stage.store.values[i] = saved - step
          let down = loss()
          stage.store.values[i] = saved
          let numeric = (up - down) / Double(2 * step)
          let error = abs(numeric - Double(analytic[i])) / max(abs(numeric), abs(Double(analytic[i])))
          if error > worst.error { worst = (error, "\(spec.name)[\(i - spec.offset)]: analytic \(analytic[i]), numeric \(numeric)") }
        }
      }
      #expect(worst.error < 0.15, "\(name), stage \(stage.index): worst relative error \(worst.error) at \(worst.name)")
      previous = stage.forward(input)
    }
  }
}

@Suite("Local methods in the one-process trainer")
struct MethodTrainingTests {
  /// The encoders step at their scale of the rate — under SGD and under Adam, which undid the
  /// gradient scaling this replaced — and the rest of the stage at the rate itself; the
  /// gradients are the true ones either way.
  @Test(arguments: [OptimizerKind.sgd, .adam])
  func contextEncodersLearnAtTheirScale(kind: OptimizerKind) throws {
    func step(scale: Float) throws -> (Stage, gradients: [Float], step: [Float]) {
      var config = methodConfig(.contsup, mode: .E)
      config.contsup.encoderLearningRateScale = scale
      (config.optimizer.kind, config.optimizer.weightDecay, config.optimizer.momentum) = (kind, 0, 0)
      let (train, _) = try config.loadData()
      let stages = try config.buildStages(sampleShape: train.sampleShape, classes: train.classes)
      let batch = train.batch(ArraySlice(0..<8))
      let handoffs = config.handoffs(stages)
      let first = stages[0].forward(handoffs[0].input(after: nil, batch: batch))
      let pass = stages[1].forward(handoffs[1].input(after: first, batch: batch))
      _ = stages[1].localGradients(pass, labels: batch.labels)
      let (store, before) = (stages[1].store, stages[1].store.valueArray)
      let gradients = Array(store.gradients.prefix(store.count))
      stages[1].optimizer.update(store, learningRate: 0.01)
      return (stages[1], gradients, zip(store.valueArray, before).map { $0 - $1 })
    }
    let full = try step(scale: 1), scaled = try step(scale: 0.1)
    let stage = full.0
    let encoder = stage.store.layout.specs.first { $0.name.hasPrefix("context.") }!.offset
    #expect(stage.store.layout.specs.filter { $0.offset >= encoder }.allSatisfy { $0.name.hasPrefix("context.") })
    #expect(scaled.gradients == full.gradients)
    for i in 0..<encoder { #expect(scaled.step[i] == full.step[i]) }
    let moved = (encoder..<full.step.count).filter { abs(full.step[$0]) > 1e-5 }
    #expect(moved.count > 10)
    for i in moved { #expect(abs(scaled.step[i] - 0.1 * full.step[i]) <= 1e-2 * abs(full.step[i]), "\(kind) [\(i)]") }
  }

  @Test(arguments: [
    methodConfig(.sid, epochs: 6), methodConfig(.sid, beliefInput: true, epochs: 6), methodConfig(.contsup, mode: .E),
    methodConfig(.contsup, mode: .R1), methodConfig(.contsup, mode: .R1E), methodConfig(.kernel, epochs: 6),
  ])
  func learnsTheToyTask(config: RunConfig) throws {
    let trainer = try makeTrainer(config)
    let reports = (0..<config.training.epochs).map { trainer.trainEpoch($0) }
    #expect(reports.last!.test.accuracy > 0.85, "\(config.method) \(config.contsup.mode)")
    #expect(reports.last!.test.stages == (config.method == .kernel ? [2] : [0, 1, 2]))
  }

  @Test func contsupStagesOwnTheirEncoders() throws {
    let stages = try methodConfig(.contsup, mode: .R1E).buildStages(sampleShape: [8, 8, 1], classes: 10)
    #expect(stages[0].contextSources.isEmpty)
    #expect(stages[1].contextSources == [.image, .previousInput])
    #expect(stages[2].store.layout.specs.contains { $0.name == "context.image.fc.weight" && $0.shape == [32, 64] })
  }

  @Test func kernelHiddenStagesHaveNoHeadAndSendUnitRows() throws {
    let trainer = try makeTrainer(methodConfig(.kernel, epochs: 1))
    #expect(trainer.stages.map { $0.head == nil } == [true, true, false])
    let pass = trainer.stages[0].forward(trainer.handoffs[0].input(after: nil, batch: trainer.train.batch(ArraySlice(0..<4))))
    for row in 0..<4 {
      let norm = pass.activations.storage[(row * 32)..<((row + 1) * 32)].reduce(Float(0)) { $0 + $1 * $1 }
      #expect(abs(norm - 1) < 1e-4 || norm == 0)
    }
  }

  /// SID's property, on a trained model: per-stage test cross-entropy does not rise with depth.
  @Test func sidCrossEntropyDoesNotRiseWithDepth() throws {
    var config = methodConfig(.sid, epochs: 4)
    config.data.syntheticTrain = 1000
    let trainer = try makeTrainer(config)
    var report: EpochReport!
    for epoch in 0..<4 { report = trainer.trainEpoch(epoch) }
    let losses = report.test.stageLoss
    for k in 1..<losses.count { #expect(losses[k] <= losses[k - 1] + 0.02, "stage CE by depth: \(losses)") }
  }

  @Test func sequentialTrainsOneStageAtATime() throws {
    var config = methodConfig(.greedy, epochs: 1)
    config.schedule = .sequential
    let trainer = try makeTrainer(config)
    let untouched = trainer.stages[1].store.valueArray
    let report = trainer.trainEpoch(0, activeStage: 0)
    #expect(report.trainLoss.count == 1 && report.activeStage == 0)
    #expect(trainer.stages[1].store.valueArray == untouched, "later stages wait their turn")
    let frozen = trainer.stages[0].store.valueArray
    trainer.restartSchedule()
    _ = trainer.trainEpoch(0, activeStage: 1)
    #expect(trainer.stages[0].store.valueArray == frozen, "earlier stages are frozen")
    #expect(trainer.stages[1].store.valueArray != untouched)
  }
}

@Suite("Method settings are checked before anything starts")
struct MethodConfigTests {
  @Test func badSettingsNameTheKey() {
    #expect(configError("method: sid\nsid: {alpha: 1.5}\n") == "sid.alpha: must be in [0, 1], got 1.5")
    #expect(configError("method: sid\nsid: {direction: reverse}\n")?.hasPrefix("sid.labelSmoothing: the reverse KL direction needs smoothed labels") == true)
    #expect(configError("method: kernel\ntraining: {batchSize: 1}\n")?.hasPrefix("training.batchSize: the kernel method aligns pairs") == true)
    #expect(configError("contsup: {mode: R2}\n") == "contsup.mode: `R2` is not one of: E, R1, R1E")
    #expect(configError("method: e2e\nschedule: sequential\n")?.hasPrefix("schedule: e2e has no stages") == true)
  }

  @Test func aContextNoStageCanTakeIsRefused() {
    let single = "method: contsup\ncontsup: {mode: R1E}\nstages:\n  - layers: [{type: linear, out: 8}]\n"
    #expect(configError(single)?.hasPrefix("contsup.mode: context R1E goes to the stages after the first, and this config has one stage") == true)
  }

  @Test func contextEncodersFitMapsAndVectors() throws {
    var maps = RunConfig()
    maps.method = .contsup
    maps.contsup.mode = .R1E
    maps.stages = [
      StageConfig(layers: [LayerConfig(.conv, out: 4), LayerConfig(.relu), LayerConfig(.maxpool)]),
      StageConfig(layers: [LayerConfig(.conv, out: 4), LayerConfig(.relu)]),
      StageConfig(layers: [LayerConfig(.flatten), LayerConfig(.linear, out: 12)]),
    ]
    let stages = try maps.buildStages(sampleShape: [8, 8, 1], classes: 10)
    // Stage 1 takes 4×4×4 maps: its image encoder convolves and pools 8×8 down to them.
    #expect(stages[1].encoders[0].net.outputShape == [4, 4, 4])
    #expect(stages[1].encoders[1].net.outputShape == [4, 4, 4])  // R1: stage 0's input, the image
    // Stage 2 takes maps as well (it flattens them itself).
    #expect(stages[2].encoders.map(\.net.outputShape) == [[4, 4, 4], [4, 4, 4]])
  }
}

/// A DRTP or DFA hidden stage of one Linear + ReLU: its gradients (in its store) are
/// δ = (B e) ⊙ relu′(a) times its input x, for the error e [B, C] — computed here by hand from
/// the stage's feedback matrix.
func expectProjectedUpdate(_ stage: Stage, inputs x: Tensor, error: Tensor, sourceLocation: SourceLocation = #_sourceLocation) throws {
  let weight = try #require(stage.store.layout.specs.first { $0.name == "body.0.weight" })
  let bias = try #require(stage.store.layout.specs.first { $0.name == "body.0.bias" })
  let (outputs, inputs) = (weight.shape[0], weight.shape[1])
  let feedback = stage.projections[0].projection.columns  // Bᵀ, class-major
  let classes = error.sampleCount
  var dW = [Double](repeating: 0, count: outputs * inputs), db = [Double](repeating: 0, count: outputs)
  for row in 0..<x.batchSize {
    for o in 0..<outputs {
      var a = Double(stage.store.values[bias.offset + o])
      for i in 0..<inputs { a += Double(stage.store.values[weight.offset + o * inputs + i]) * Double(x.storage[row * inputs + i]) }
      var projected = 0.0
      for c in 0..<classes { projected += Double(feedback[c * outputs + o]) * Double(error.storage[row * classes + c]) }
      let delta = a > 0 ? projected : 0
      db[o] += delta
      for i in 0..<inputs { dW[o * inputs + i] += delta * Double(x.storage[row * inputs + i]) }
    }
  }
  var worst = 0.0
  for (k, expected) in dW.enumerated() { worst = max(worst, abs(Double(stage.store.gradients[weight.offset + k]) - expected)) }
  for (k, expected) in db.enumerated() { worst = max(worst, abs(Double(stage.store.gradients[bias.offset + k]) - expected)) }
  let scale = dW.map(abs).max()!
  #expect(scale > 1e-3 && worst < 1e-5 * max(1, scale), "largest difference \(worst) against gradients up to \(scale)", sourceLocation: sourceLocation)
}

/// DRTP: a hidden layer's update is the projected target, gated by its own nonlinearity,
/// times its input: DFA's update with the error −onehot(y)/B.
@Suite("DRTP")
struct DRTPTests {
  @Test func aHiddenLayersUpdateIsTheProjectedTargetTimesItsInput() throws {
    let config = methodConfig(.drtp)
    let (train, _) = try config.loadData()
    let stages = try config.buildStages(sampleShape: train.sampleShape, classes: train.classes)
    let stage = stages[0]
    #expect(stage.head == nil && stage.projections.map(\.layer) == [1])
    let batch = train.batch(ArraySlice(0..<12))
    stage.store.zeroGradients()
    _ = stage.localGradients(stage.forward(Stage.Input(x: batch.images, labels: batch.labels)), labels: batch.labels)
    var error = Tensor(zeros: [12, 10])  // −onehot(y) over the batch's mean, by hand
    for (row, label) in batch.labels.enumerated() { error.storage[row * 10 + Int(label)] = -1 / 12 }
    try expectProjectedUpdate(stage, inputs: batch.images, error: error)
  }

  @Test func theProjectionsAreFixedBySeedAndStage() throws {
    let config = methodConfig(.drtp)
    let a = try config.buildStages(sampleShape: [8, 8, 1], classes: 10)
    let b = try config.buildStages(sampleShape: [8, 8, 1], classes: 10)
    #expect(a[0].projections[0].projection.columns == b[0].projections[0].projection.columns)
    #expect(a[0].projections[0].projection.columns != a[1].projections[0].projection.columns)
    #expect(a[2].projections.isEmpty && a[2].head != nil, "the last stage trains its classifier on the true gradient")
    let bound = 1 / Float(32).squareRoot()
    #expect(a[0].projections[0].projection.columns.allSatisfy { abs($0) <= bound })
  }

  @Test func learnsTheToyTaskWithoutAnErrorFromAbove() throws {
    var config = methodConfig(.drtp, epochs: 6)
    // A projected target never shrinks as the network learns (an error does): at the other
    // methods' 0.05 the hidden activations grow until the classifier diverges.
    config.optimizer.learningRate = 0.01
    let trainer = try makeTrainer(config)
    let reports = (0..<config.training.epochs).map { trainer.trainEpoch($0) }
    #expect(reports.last!.test.accuracy > 0.7, "\(reports.map(\.test.accuracy))")
    #expect(reports.last!.test.accuracy > reports.first!.test.accuracy + 0.2)
    #expect(reports.last!.test.stages == [2])
  }

  @Test func aStageWithNothingToTrainIsRefused() {
    var config = methodConfig(.drtp)
    config.stages[1] = StageConfig(layers: [LayerConfig(.relu)])
    #expect(configError(of: config, sampleShape: [8, 8, 1]) == "stages[1].layers: a drtp hidden stage needs a layer with weights (linear or conv) to train")
  }
}
