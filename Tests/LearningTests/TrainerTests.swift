import Datasets
import Foundation
import NN
import TestSupport
import Testing

@testable import Learning

func makeTrainer(_ config: RunConfig) throws -> Trainer {
  let (train, test) = try config.loadData()
  return try Trainer(config: config, train: train, test: test)
}

@Suite("One-process trainer")
struct TrainerTests {
  @Test(arguments: [Method.e2e, .greedy])
  func learnsTheToyTask(method: Method) throws {
    let trainer = try makeTrainer(smallConfig(method, epochs: 3))
    let before = trainer.evaluate()
    var reports: [EpochReport] = []
    for epoch in 0..<3 { reports.append(trainer.trainEpoch(epoch)) }
    #expect(before.accuracy < 0.5)
    #expect(reports.last!.test.accuracy > 0.9)
    #expect(reports.last!.trainLoss.last! < reports.first!.trainLoss.last!)
    #expect(reports.last!.test.stageAccuracy.count == (method == .greedy ? 3 : 1))
  }

  @Test func sameSeedGivesTheSameLossCurveBitForBit() throws {
    func curve() throws -> [UInt32] {
      let trainer = try makeTrainer(smallConfig(.greedy))
      return (0..<2).flatMap { trainer.trainEpoch($0).trainLoss.map { Float($0).bitPattern } }
    }
    let first = try curve()
    #expect(try curve() == first)
    var other = smallConfig(.greedy)
    other.seed = 2
    let trainer = try makeTrainer(other)
    #expect(trainer.trainEpoch(0).trainLoss.map { Float($0).bitPattern } != Array(first.prefix(3)))
  }

  /// Gradient isolation: in greedy training a stage's update depends only on its input, so
  /// stage 0 trained alongside later stages ends exactly where stage 0 trained alone ends.
  @Test func greedyStagesAreGradientIsolated() throws {
    let full = try makeTrainer(smallConfig(.greedy))
    var alone = smallConfig(.greedy)
    alone.stages = Array(alone.stages.prefix(1))
    let single = try makeTrainer(alone)
    for indices in full.order.batches(epoch: 0).prefix(5) {
      full.trainStep(full.train.batch(indices))
      single.trainStep(single.train.batch(indices))
    }
    #expect(full.stages[0].store.valueArray == single.stages[0].store.valueArray)
  }

  /// e2e's cross-stage backward: the gradient the trainer applies to stage 0 matches a
  /// central difference of the network's loss.
  @Test func e2eGradientCrossesStageBoundaries() throws {
    var config = smallConfig(.e2e)
    config.stages = RunConfig.mlpStages(width: 6, count: 2)
    config.optimizer.momentum = 0
    config.optimizer.weightDecay = 0
    config.optimizer.learningRate = 1  // the update is then exactly −gradient
    config.learningRateSchedule.kind = .constant
    let trainer = try makeTrainer(config)
    let batch = trainer.train.batch(ArraySlice(0..<8))
    let stage0 = trainer.stages[0].store
    let before = stage0.valueArray

    func loss() -> Double {
      let h = trainer.stages.reduce(batch.images) { $1.body.infer($0, $1.store) }
      let last = trainer.stages.last!
      let logits = last.head!.infer(h, belief: nil, last.store)
      return Double(softmaxCrossEntropy(logits: logits, labels: batch.labels).loss)
    }
    let probes = Array(stride(from: 0, to: stage0.count, by: stage0.count / 25))
    var numeric: [Double] = []
    for i in probes {
      let saved = stage0.values[i]
      stage0.values[i] = saved + 1e-2
      let up = loss()
      stage0.values[i] = saved - 1e-2
      let down = loss()
      stage0.values[i] = saved
      numeric.append((up - down) / 2e-2)
    }
    trainer.trainStep(batch)
    for (n, i) in probes.enumerated() {
      let applied = Double(before[i] - stage0.values[i])
      #expect(abs(applied - numeric[n]) < 2e-3 + 2e-2 * abs(numeric[n]), "θ[\(i)]: \(applied) vs \(numeric[n])")
    }
  }

  @Test func convNetTrainsGreedily() throws {
    // The toy classes differ by where pixels are bright, so the last stage keeps positions
    // (flatten) instead of pooling them away.
    var config = smallConfig(.greedy, epochs: 4)
    config.stages = [
      StageConfig(layers: [LayerConfig(.conv, out: 4), LayerConfig(.relu), LayerConfig(.maxpool)]),
      StageConfig(layers: [LayerConfig(.conv, out: 8), LayerConfig(.relu), LayerConfig(.flatten)]),
    ]
    let trainer = try makeTrainer(config)
    let report = (0..<4).map { trainer.trainEpoch($0) }.last!
    #expect(report.test.stageAccuracy.count == 2)
    #expect(report.test.accuracy > 0.5)
  }
}

@Suite("Safetensors checkpoints")
struct SafetensorsTests {
  @Test func stageWeightsRoundTrip() throws {
    let trainer = try makeTrainer(smallConfig(.greedy, epochs: 1))
    _ = trainer.trainEpoch(0)
    let stage = trainer.stages[1]
    let path = temporaryPath("checkpoint", extension: ".safetensors")
    defer { try? FileManager.default.removeItem(atPath: path) }
    try stage.save(to: path, metadata: ["epoch": "1"])
    let (tensors, metadata) = try Safetensors.read(path)
    #expect(metadata["stage"] == "1" && metadata["epoch"] == "1")
    #expect(metadata["optimizer.steps"] == "\(stage.optimizer.stepCount)")
    for spec in stage.store.layout.specs {
      let tensor = try #require(tensors[spec.name])
      #expect(tensor.shape == spec.shape)
      #expect(tensor.storage == Array(stage.store.values[spec.offset..<(spec.offset + spec.count)]))
    }
    #expect(tensors["optimizer.momentum"]?.count == stage.store.count)
    #expect(!FileManager.default.fileExists(atPath: "\(path).tmp-\(getpid())"))
  }

  /// BatchNorm in a stage: training learns, evaluation normalises with the running statistics
  /// (the same answer twice, nothing changed, not the training forward's), and the statistics
  /// are checkpointed: a restored stage evaluates the same.
  @Test func batchNormStagesTrainEvaluateAndRestore() throws {
    var config = smallConfig(.greedy, epochs: 2)
    for k in config.stages.indices { config.stages[k].layers.insert(LayerConfig(.batchnorm), at: 1) }
    let trainer = try makeTrainer(config)
    let reports = (0..<2).map { trainer.trainEpoch($0) }
    #expect(reports.last!.test.accuracy > 0.7, "\(reports.map(\.test.accuracy))")
    let stage = trainer.stages[0]
    #expect(stage.store.layout.specs.map(\.name).contains("body.1.running_mean"))
    let input = Stage.Input(x: trainer.test.batch(ArraySlice(0..<16)).images.reshaped([16, 64]), labels: [Int32](repeating: 0, count: 16))
    let before = stage.store.valueArray
    let evaluated = stage.infer(input).pass.h
    #expect(stage.store.valueArray == before && stage.infer(input).pass.h.storage == evaluated.storage)
    #expect(stage.forward(input).h.storage != evaluated.storage, "training normalises with the batch's statistics")
    try withTemporaryDirectory { dir in
      try trainer.stages[1].save(to: "\(dir)/s.safetensors", metadata: [:])
      let fresh = try config.buildStage(1, sampleShape: trainer.train.sampleShape, classes: trainer.train.classes)
      try fresh.restore(from: "\(dir)/s.safetensors")
      let x = Stage.Input(x: evaluated, labels: input.labels)
      #expect(fresh.infer(x).logits!.storage == trainer.stages[1].infer(x).logits!.storage)
    }
  }

  @Test func restoreBringsBackWeightsAndOptimizerState() throws {
    let config = smallConfig(.greedy, epochs: 1)
    let trainer = try makeTrainer(config)
    _ = trainer.trainEpoch(0)
    let path = temporaryPath("checkpoint", extension: ".safetensors")
    defer { try? FileManager.default.removeItem(atPath: path) }
    try trainer.stages[1].save(to: path, metadata: ["config_hash": config.configHash])
    let fresh = try config.buildStage(1, sampleShape: trainer.train.sampleShape, classes: 10)
    try fresh.restore(from: path, config: config)  // a checkpoint from before model hashes
    #expect(fresh.store.valueArray == trainer.stages[1].store.valueArray)
    #expect(Array(fresh.store.slot("momentum").prefix(fresh.store.count)) == Array(trainer.stages[1].store.slot("momentum").prefix(fresh.store.count)))
    #expect(fresh.optimizer.stepCount == trainer.stages[1].optimizer.stepCount)

    var other = config
    other.seed = 99
    #expect { try fresh.restore(from: path, config: other) } throws: { "\($0)".contains("another config") }
    // With a model hash, training longer or at other rates restores; another model does not.
    try trainer.stages[1].save(to: path, metadata: config.checkpointMetadata)
    var longer = config
    longer.training.epochs = 7
    longer.optimizer.learningRate = 0.01
    longer.training.threads = 2
    longer.schedule = .lockstep
    try fresh.restore(from: path, config: longer)
    #expect(longer.modelDifferences(from: config).isEmpty)
    #expect { try fresh.restore(from: path, config: other) } throws: { "\($0)".contains("another model") }
    var e2e = config
    e2e.method = .e2e
    #expect(config.modelDifferences(from: e2e) == ["method"])
    let stage0 = try config.buildStage(0, sampleShape: trainer.train.sampleShape, classes: 10)
    #expect { try stage0.restore(from: path) } throws: { "\($0)".contains("holds stage 1, not stage 0") }
    var wider = config
    wider.stages = RunConfig.mlpStages(width: 48, count: 3)
    let mismatched = try wider.buildStage(1, sampleShape: trainer.train.sampleShape, classes: 10)
    #expect { try mismatched.restore(from: path) } throws: { "\($0)".contains("this stage needs") }
  }

  @Test func truncatedOrCorruptFilesAreRefusedWithAReason() throws {
    let bytes = Safetensors.encode([.init(name: "w", shape: [2, 3], values: [1, 2, 3, 4, 5, 6])], metadata: ["a": "b"])
    #expect(try Safetensors.decode(bytes).tensors["w"]?.storage == [1, 2, 3, 4, 5, 6])
    #expect { try Safetensors.decode(Array(bytes.dropLast(4))) } throws: { "\($0)".contains("outside the data") }
    #expect { try Safetensors.decode(Array(bytes.prefix(5))) } throws: { "\($0)".contains("8-byte header") }
    var flipped = bytes
    flipped[flipped.count - 1] ^= 0x01  // one bit of the last value: the shapes still agree
    #expect { try Safetensors.decode(flipped) } throws: { "\($0)".contains("does not match its checksum") }
    var garbled = bytes
    garbled[9] = 0x7B  // break the JSON
    garbled[10] = 0x7B
    #expect(throws: Safetensors.FormatError.self) { try Safetensors.decode(garbled) }
    var huge = bytes
    huge[7] = 0x7F  // header length far past the end
    #expect { try Safetensors.decode(huge) } throws: { "\($0)".contains("header length") }
  }
}
