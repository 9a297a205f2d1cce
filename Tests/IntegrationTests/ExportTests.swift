import Datasets
import Foundation
import Learning
import TestSupport
import Testing

/// The ONNX checkers' Python (scripts/onnx/setup.sh makes it), when numpy, onnx and onnxruntime import.
let onnxPython: String? = {
  let python = "\(packageRoot)/.venv-onnx/bin/python"
  guard let result = try? ChildProcess(executable: python, ["-c", "import numpy, onnx, onnxruntime"]).wait(timeout: .seconds(60)),
    result.status == 0
  else { return nil }
  return python
}()

/// Models to export: a name, a config (YAML, with `DATA` for a data block), the data block, and
/// whether every head is exported.
struct ExportCase: CustomTestStringConvertible, Sendable {
  var name: String
  var yaml: String
  var colourNPZ = false
  var allHeads = false
  /// A shipped config cut down to a test's size: samples for training and test, one epoch.
  var limits: (train: Int, test: Int)?
  var testDescription: String { name }

  static let cases: [ExportCase] = [
    // Model A on Fashion-MNIST, greedy, four stages.
    ExportCase(name: "model A", yaml: shipped("mlp-greedy-k4"), limits: (2000, 2000)),
    // A small model C: BatchNorm, residual blocks (strided projections), mlp-sr heads on uneven
    // grids with BatchNorm (`head.batchnorm`, as shipped) but the first stage's without it.
    ExportCase(
      name: "model C", yaml: { () -> String in
        var yaml = shipped("resnet-c-k4")
        if let first = yaml.range(of: "head: {type: mlp-sr, hidden: 128, batchnorm: true}") {
          yaml.replaceSubrange(first, with: "head: {type: mlp-sr, hidden: 128}")
        }
        return yaml
      }(), allHeads: true, limits: (300, 500)),
    // ContSup's encoders (the image and the previous stage's input) on float colour images.
    ExportCase(name: "contsup R1E, colour floats", yaml: """
      method: contsup
      contsup: {mode: R1E}
      training: {epochs: 2, batchSize: 32}
      stages:
        - layers: [{type: linear, out: 32}, {type: relu}]
        - layers: [{type: linear, out: 32}, {type: relu}]
        - layers: [{type: linear, out: 32}, {type: relu}]
      """, colourNPZ: true),
    // SID's belief chain, every head out.
    ExportCase(name: "sid with belief input", yaml: """
      method: sid
      sid: {beliefInput: true}
      data: {source: synthetic}
      training: {epochs: 2, batchSize: 32}
      stages:
        - layers: [{type: linear, out: 32}, {type: relu}]
        - layers: [{type: linear, out: 32}, {type: relu}]
      """, allHeads: true),
    // The kernel method's normalised features between stages.
    ExportCase(name: "kernel", yaml: """
      method: kernel
      data: {source: synthetic}
      training: {epochs: 2, batchSize: 32}
      stages:
        - layers: [{type: linear, out: 32}, {type: relu}]
        - layers: [{type: linear, out: 32}, {type: relu}]
      """),
    // The remaining layers, end to end: pooling, tanh, dropout, flatten, BatchNorm on vectors.
    ExportCase(name: "e2e cnn", yaml: """
      method: e2e
      schedule: lockstep
      data: {source: synthetic, syntheticSide: 12}
      training: {epochs: 2, batchSize: 32}
      stages:
        - layers: [{type: conv, out: 8}, {type: batchnorm}, {type: relu}, {type: maxpool, size: 2}, {type: conv, out: 8, stride: 2, padding: 0}, {type: tanh}]
        - layers: [{type: avgpool, size: 2, stride: 1}, {type: dropout, rate: 0.2}, {type: flatten}, {type: linear, out: 16}, {type: batchnorm}, {type: relu}]
      """),
  ]

  static func shipped(_ name: String) -> String {
    (try? String(contentsOfFile: "\(packageRoot)/config/\(name).yaml", encoding: .utf8)) ?? ""
  }
}

@Suite("ONNX export, checked by ONNX Runtime", .serialized, .enabled(if: onnxPython != nil, "no .venv-onnx with numpy, onnx and onnxruntime: scripts/onnx/setup.sh could not install them (no package index?)"))
struct ExportTests {
  /// Train, evaluate, export, predict; ONNX Runtime then gives Stagewise's classes and logits
  /// on the test images, `onnx.checker` passes the file, and the images numpy writes again
  /// predict the same.
  @Test(arguments: ExportCase.cases)
  func onnxRuntimeReproducesStagewise(_ job: ExportCase) throws {
    let dir = try temporaryDirectory("export")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var config = try RunConfig.parse(yaml: job.yaml)
    #expect(job.name != "model C" || (!config.stages[0].head.batchnorm && config.stages[1].head.batchnorm),
            "the case lost its mix of heads with and without BatchNorm")
    if let limits = job.limits {
      (config.data.trainLimit, config.data.testLimit, config.training.epochs) = (limits.train, limits.test, 1)
    }
    if job.colourNPZ {
      try writeNPZ(syntheticNPZMembers(colour: true, train: 600, test: 200), to: "\(dir)/data.npz", compress: true)
      (config.data.source, config.data.path) = (.npz, "\(dir)/data.npz")
    }
    try config.yaml().write(toFile: "\(dir)/c.yaml", atomically: true, encoding: .utf8)
    let trained = try ChildProcess.stagewise(["train", "--config", "\(dir)/c.yaml", "--out", "\(dir)/run"], timeout: .seconds(300))
    try #require(trained.status == 0, "\(trained.stderr)")

    // The test images as the data file holds them, with their labels.
    let test = try config.loadData().test
    let images: [UInt8]
    switch test.raw {
    case .bytes(let b): images = NPYArray.encode(descr: "|u1", shape: [test.count] + test.sampleShape, data: b)
    case .floats(let f): images = NPYArray.encode(shape: [test.count] + test.sampleShape, floats: f)
    }
    try writeNPZ([("x_test.npy", images), ("y_test.npy", NPYArray.encode(shape: [test.count], integers: test.labels.map(Int64.init)))], to: "\(dir)/test.npz")

    let evaluated = try ChildProcess.stagewise(["eval", "\(dir)/run"], timeout: .seconds(300))
    try #require(evaluated.status == 0, "\(evaluated.stderr)")
    let evalAccuracy = try #require(evaluated.stdout.split(separator: "\n").last { $0.hasPrefix("test accuracy") }).split(separator: " ")[2]

    var export = ["export", "\(dir)/run", "--onnx", "\(dir)/model.onnx"]
    if job.allHeads { export.append("--all-heads") }
    let exported = try ChildProcess.stagewise(export, timeout: .seconds(300))
    try #require(exported.status == 0, "\(exported.stderr)")

    let predicted = try ChildProcess.stagewise(["predict", "\(dir)/run", "--data", "\(dir)/test.npz", "--out", "\(dir)/predictions.npz"], timeout: .seconds(300))
    try #require(predicted.status == 0, "\(predicted.stderr)")
    #expect(predicted.stderr.contains("accuracy \(evalAccuracy) %"), "predict agrees with eval (\(evalAccuracy) %): \(predicted.stderr)")

    let heads = job.allHeads ? config.stages.indices.filter { config.scoresHead(ofStage: $0) }.count : 1
    let checked = try ChildProcess(
      executable: onnxPython!,
      ["\(packageRoot)/scripts/onnx/check.py", "\(dir)/model.onnx", "\(dir)/test.npz", "\(dir)/predictions.npz", "--outputs", "\(heads)", "--resave", "\(dir)/numpy.npz"]
    ).wait(timeout: .seconds(300))
    #expect(checked.status == 0, "\(checked.stdout)\(checked.stderr)")
    #expect(checked.stdout.contains("accuracy \(evalAccuracy) %"), "\(checked.stdout)")

    // What numpy wrote (savez_compressed), Stagewise reads to the same predictions.
    let again = try ChildProcess.stagewise(["predict", "\(dir)/run", "--data", "\(dir)/numpy.npz", "--out", "\(dir)/again.npz"], timeout: .seconds(300))
    try #require(again.status == 0, "\(again.stderr)")
    #expect(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/again.npz")) == Data(contentsOf: URL(fileURLWithPath: "\(dir)/predictions.npz")))
  }
}
