import Foundation
import TestSupport
import Testing

import Datasets

@testable import Learning

@Suite("Config: defaults, key paths in errors, shipped setups")
struct ConfigTests {
  @Test func emptyDocumentIsTheDefault() throws {
    #expect(try RunConfig.parse(yaml: "") == RunConfig())
    #expect(try RunConfig.parse(yaml: "seed: 1") == RunConfig())
  }

  @Test func defaultIsModelAGreedyWithFourStages() throws {
    let config = RunConfig()
    #expect(config.method == .greedy && config.stages.count == 4)
    let stages = try config.buildStages(sampleShape: [28, 28, 1], classes: 10)
    #expect(stages.map(\.outputShape) == [[1024], [1024], [1024], [1024]])
  }

  @Test func resolvedYAMLRoundTrips() throws {
    var config = RunConfig()
    config.training.epochs = 3
    config.optimizer.kind = .adamw
    config.stages[1].head.type = .mlp
    #expect(!(try config.yaml()).contains("batchnorm"), "a head without BatchNorm must encode as before: its model hash is in checkpoints")
    config.stages[1].head.batchnorm = true
    #expect(try RunConfig.parse(yaml: config.yaml()) == config)
  }

  /// A run states the normalisation it measured in its config.yaml; read back, the floats are
  /// the same bits (or a resumed run would read its images otherwise).
  @Test func statedNormalisationRoundTripsExactly() throws {
    let measured = ImageNormalisation(mean: [0.28604060411453247, 1e-7, 0.1 + 0.2], std: [0.35302424430847168, 3.4e38, 1 / 3])
    var config = RunConfig()
    config.data.source = .npz
    let stated = config.stating(measured)
    let read = try RunConfig.parse(yaml: stated.yaml())
    #expect(read == stated && read.givenNormalisation == measured)
    #expect(configError("data: {mean: [0.5]}\n")?.hasPrefix("data.std: give data.mean and data.std together") == true)
    #expect(configError("data: {mean: [0.5, 0.5], std: [1]}\n")?.hasPrefix("data.std: needs as many values as data.mean") == true)
  }

  @Test func unknownKeyIsNamedWithItsPath() {
    let message = configError("training:\n  epochz: 3\n")
    #expect(message?.hasPrefix("training.epochz: unknown key") == true, "\(message ?? "")")
    #expect(message?.contains("epochs") == true)
  }

  @Test func unknownKeyInsideALayerIsNamed() {
    let message = configError("stages:\n  - layers: [{type: linear, out: 10, widht: 3}]\n")
    #expect(message?.hasPrefix("stages[0].layers[0].widht: unknown key") == true, "\(message ?? "")")
  }

  @Test func wrongTypeIsNamedWithItsPath() {
    let message = configError("training:\n  epochs: many\n")
    #expect(message?.hasPrefix("training.epochs: expected an integer") == true, "\(message ?? "")")
  }

  @Test func badChoiceListsTheValidOnes() {
    let message = configError("method: backprop\n")
    #expect(message == "method: `backprop` is not one of: e2e, greedy, sid, contsup, kernel, drtp, dfa, dni, cdni")
  }

  @Test func mismatchedShapesNameTheLayerAndBothSizes() {
    let yaml = """
      stages:
        - layers: [{type: linear, out: 512}, {type: relu}]
        - layers: [{type: linear, in: 1024, out: 10}]
      """
    #expect(configError(yaml) == "stages[1].layers[0]: linear expects 1024 inputs, the previous stage outputs 512")
  }

  @Test func convOnAVectorIsRefused() {
    let yaml = "stages:\n  - layers: [{type: linear, out: 20}, {type: conv, out: 4}]\n"
    #expect(configError(yaml)?.hasPrefix("stages[0].layers[1]: conv needs an image map") == true)
  }

  @Test func outOfRangeValuesAreRefused() {
    #expect(configError("training: {batchSize: 0}") == "training.batchSize: must be at least 1, got 0")
    #expect(configError("optimizer: {momentum: 1.5}") == "optimizer.momentum: must be in [0, 1)")
    #expect(configError("optimizer: {rateScales: {encoder: 0.1}}") == "optimizer.rateScales.encoder: is not a parameter group: use body, head, context")
    #expect(configError("optimizer: {rateScales: {head: -1}}") == "optimizer.rateScales.head: must be a finite number ≥ 0")
    #expect(configError("method: contsup\noptimizer: {rateScales: {context: 0.5}}") == "optimizer.rateScales.context: ContSup's encoders step at contsup.encoderLearningRateScale: set that one")
    #expect(configError("optimizer: {rateScales: {head: 2}}") == nil)
    #expect(configError("stages: [{layers: [{type: linear, out: 8}], head: {type: linear, batchnorm: true}}]") == "stages[0].head.batchnorm: a linear head has no hidden layer to normalise: use type mlp or mlp-sr")
    #expect(configError("stages: [{layers: [{type: linear, out: 8}, {type: residual}]}]") == "stages[0].layers[1]: residual needs `layers`, the block's layers in order")
    #expect(configError("stages: [{layers: [{type: conv, out: 4}, {type: residual, layers: [{type: linear, out: 8}]}]}]") == "stages[0].layers[1]: residual: its layers map [28, 28, 4] to [8], which neither the identity nor a projection (a strided 1×1 conv on maps, an affine map on vectors) can add to")
    #expect(configError("stages: [{layers: [{type: conv, out: 4}, {type: residual, layers: [{type: conv, out: 8, stride: 2}, {type: relu}]}]}]") == nil)
    #expect(configError("stages: [{layers: [{type: linear, out: 8}, {type: dropout}]}]") == "stages[0].layers[1]: dropout needs `rate` in [0, 1), the probability of dropping a value")
    #expect(configError("stages: [{layers: [{type: linear, out: 8}, {type: dropout, rate: 1}]}]") == "stages[0].layers[1]: dropout needs `rate` in [0, 1), the probability of dropping a value")
    #expect(configError("method: cdni\ndni: {learningRate: -0.1}") == "dni.learningRate: must be a finite number ≥ 0 (0 freezes the synthesisers)")
    #expect(configError("stages: []") == "stages: needs at least one stage")
  }

  @Test func missingLayerTypeIsNamed() {
    #expect(configError("stages:\n  - layers: [{out: 3}]\n")?.hasPrefix("stages[0].layers[0]: a layer needs `type`") == true)
  }

  @Test func malformedYAMLIsOneLine() {
    let message = configError("stages: [\n")
    #expect(message?.contains("not valid YAML") == true)
  }

  @Test func everyShippedConfigLoadsAndBuilds() throws {
    let folder = packageRoot + "/config"
    let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".yaml") }
    #expect(files.count >= 4)
    for file in files {
      let config = try RunConfig.load(path: "\(folder)/\(file)")
      let shape = config.data.source == .synthetic ? [config.data.syntheticSide, config.data.syntheticSide, 1] : [28, 28, 1]
      _ = try config.buildStages(sampleShape: shape, classes: 10)
    }
  }

  /// Model C at K = 2, 4, 8, 16: the same 16 units, only split differently; each stage's
  /// output feeds the next and every stage has an mlp-sr head with BatchNorm.
  @Test func modelCIsOneNetworkCutFourWays() throws {
    let cuts = try [2, 4, 8, 16].map { try RunConfig.load(path: packageRoot + "/config/resnet-c-k\($0).yaml") }
    #expect(cuts.map(\.stages.count) == [2, 4, 8, 16])
    let layers = cuts.map { $0.stages.flatMap(\.layers) }
    #expect(layers.allSatisfy { $0 == layers[0] } && layers[0].filter { $0.type == .residual }.count == 15)
    for config in cuts {
      #expect(config.stages.allSatisfy { $0.head.type == .mlpSR && $0.head.batchnorm })
      let stages = try config.buildStages(sampleShape: [28, 28, 1], classes: 10)
      #expect(stages.last!.body.outputShape == [7, 7, 32])
    }
  }
}
