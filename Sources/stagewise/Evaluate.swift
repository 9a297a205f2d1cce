import ArgumentParser
import Foundation
import Learning
import NN
import Runtime

/// `stagewise eval RUN_DIR`: rebuild a run's stages from its config and weights and evaluate
/// them on its test set again.
struct Evaluate: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "eval",
    abstract: "Evaluate a run's saved stages on the test set (accuracy by depth).")

  @Argument(help: "A run directory (config.yaml and stage-K.safetensors).") var runDirectory: String

  func run() throws {
    let run = try TrainedRun(runDirectory)
    let report = run.trainer.evaluate()
    let stages = report.stages ?? Array(report.stageAccuracy.indices)
    for (i, accuracy) in report.stageAccuracy.enumerated() {
      Console.print(
        String(
          format: "stage %d: test accuracy %.2f %%, cross-entropy %.4f", stages[i], accuracy * 100,
          report.stageLoss[i]))
    }
    Console.print(
      String(format: "test accuracy %.2f %% (%d samples)", report.accuracy * 100, run.test.count))
  }
}
