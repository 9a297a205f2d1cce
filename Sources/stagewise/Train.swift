import ArgumentParser
import Foundation
import Learning
import Linalg
import Memory
import NN

/// `stagewise train`: every stage in one process, the numerical reference.
struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Train in one process (e2e or local methods); the reference for the daemon.")

  @OptionGroup var job: JobOptions

  func run() throws {
    let resolved = try job.resolved()
    BLAS.setThreads(resolved.training.threads)
    Allocator.keepFreedMemory()
    let (train, test) = try resolved.loadData()
    let runConfig = resolved.stating(train.normalisation)
    let trainer = try Trainer(config: runConfig, train: train, test: test)
    let directory = try RunDirectory(
      path: job.out ?? RunDirectory.defaultPath(name: runConfig.name), config: runConfig)
    Console.kernels()
    Console.status(
      "\(runConfig.name): \(runConfig.method.rawValue), \(trainer.stages.count) stages, "
        + "\(train.count) train / \(test.count) test samples, BLAS \(BLAS.coreName) × "
        + "\(runConfig.training.threads), run \(directory.path)"
    )

    let epochsTotal = runConfig.training.epochs
    try trainer.run(
      progress: { epoch, done, total, loss in
        if done % 10 == 0 || done == total {
          Console.progress(
            "epoch \(epoch + 1)/\(epochsTotal) \(Console.bar(done, of: total)) \(done)/\(total) "
              + "loss \(String(format: "%.4f", loss))"
          )
        }
      },
      onEpoch: { report in
        Console.clearProgress()
        try directory.record(report)
        Console.print(EpochReport.line(report, of: epochsTotal))
        return false
      })
    for stage in trainer.stages {
      try stage.save(
        to: directory.stageWeightsPath(stage.index),
        metadata: runConfig.checkpointMetadata.merging([
          "epoch": "\(epochsTotal)", "step": "\(trainer.step)",
        ]) { $1 })
    }
    Console.print(
      "final test accuracy \(String(format: "%.2f", trainer.evaluate().accuracy * 100))%; weights "
        + "in \(directory.path)"
    )
  }
}
