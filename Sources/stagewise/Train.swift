import ArgumentParser
import Foundation
import Learning
import NN
import Linalg

/// `stagewise train`: every stage in one process, the numerical reference.
struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Train in one process (e2e or local methods); the reference for the daemon.")

  @Option(name: .shortAndLong, help: "YAML config; the default trains model A greedily with 4 stages.")
  var config: String?

  @Option(help: "Override training.epochs.")
  var epochs: Int?

  @Option(help: "Override the method (e2e, greedy).")
  var method: String?

  @Option(help: "Override training.threads (OpenBLAS threads).")
  var threads: Int?

  @Option(help: "Run directory (default runs/NAME-TIMESTAMP).")
  var out: String?

  func run() throws {
    var runConfig = try config.map { path throws(ConfigError) in try RunConfig.load(path: path) } ?? RunConfig()
    if let epochs { runConfig.training.epochs = epochs }
    if let threads { runConfig.training.threads = threads }
    if let method {
      guard let value = Method(rawValue: method) else {
        throw ValidationError("--method \(method) is not one of: \(Method.allCases.map(\.rawValue).joined(separator: ", "))")
      }
      runConfig.method = value
    }
    try runConfig.validate()
    BLAS.setThreads(runConfig.training.threads)
    Allocator.keepFreedMemory()
    let (train, test) = try runConfig.loadData()
    let trainer = try Trainer(config: runConfig, train: train, test: test)
    let directory = try RunDirectory(path: out ?? RunDirectory.defaultPath(name: runConfig.name), config: runConfig)
    Console.status(
      "\(runConfig.name): \(runConfig.method.rawValue), \(trainer.stages.count) stages, "
        + "\(train.count) train / \(test.count) test samples, BLAS \(BLAS.coreName) × \(runConfig.training.threads), run \(directory.path)")

    let epochsTotal = runConfig.training.epochs
    for epoch in 0..<epochsTotal {
      let report = trainer.trainEpoch(epoch) { done, total, loss in
        if done % 10 == 0 || done == total {
          Console.progress("epoch \(epoch + 1)/\(epochsTotal) \(Console.bar(done, of: total)) \(done)/\(total) loss \(String(format: "%.4f", loss))")
        }
      }
      Console.clearProgress()
      try directory.record(report)
      Console.print(EpochReport.line(report, of: epochsTotal))
    }
    let hash = String(runConfig.yaml().utf8.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }, radix: 16)
    for stage in trainer.stages {
      try stage.save(
        to: directory.stageWeightsPath(stage.index),
        metadata: ["epoch": "\(epochsTotal)", "step": "\(trainer.step)", "config_hash": hash])
    }
    Console.print("final test accuracy \(String(format: "%.2f", trainer.evaluate().accuracy * 100))%; weights in \(directory.path)")
  }
}
