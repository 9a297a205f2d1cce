import Foundation
import Learning

/// A worker's checkpoints: the consistent cuts taken when a marker passes (every epoch's end,
/// and every N batches with `daemon.checkpointEverySteps`), and its last weights when it leaves.
/// Every file is written atomically.
extension Worker {
  /// Checkpoint paths: the final weights, an interrupted run's last weights, and the
  /// consistent cuts at each epoch's end (and mid-epoch, with `daemon.checkpointEverySteps`).
  var finalCheckpointPath: String { "\(assignment.runDirectory)/stage-\(assignment.stage).safetensors" }
  var interruptedCheckpointPath: String { "\(assignment.runDirectory)/stage-\(assignment.stage).last.safetensors" }
  func epochCheckpointPath(_ epochsDone: Int) -> String {
    ResumePoint.epochPath(in: assignment.runDirectory, stage: assignment.stage, epochsDone: epochsDone)
  }

  func saveCheckpoint(to path: String, epochsDone: Int?) throws {
    var metadata = config.checkpointMetadata.merging(["step": "\(trainStep)", "job": "\(assignment.job)"]) { $1 }
    if let epochsDone { metadata["epoch"] = "\(epochsDone)" }
    try stage.save(to: path, metadata: metadata)
  }

  /// At the train-end marker every stage has trained exactly the epoch's batches: a
  /// consistent cut with no global pause. Written atomically; cuts before the previous
  /// epoch's are removed.
  func saveEpochCheckpoint(epochsDone: Int) {
    do {
      try saveCheckpoint(to: epochCheckpointPath(epochsDone), epochsDone: epochsDone)
      // Kept: this cut and the one an epoch before, with what lies between.
      ResumePoint.prune(
        in: assignment.runDirectory, stage: assignment.stage, batchesPerEpoch: assignment.batchesPerEpoch,
        before: (epochsDone - 1) * assignment.batchesPerEpoch)
    } catch {
      log("could not save the epoch \(epochsDone) checkpoint: \(error)")
    }
  }

  /// A mid-epoch checkpoint marker: the same consistent cut as at an epoch's end, named by
  /// the global training step; this process keeps its last two.
  func saveStepCheckpoint(epoch: Int, batchesDone: Int) {
    let path = ResumePoint.stepPath(
      in: assignment.runDirectory, stage: assignment.stage, step: epoch * assignment.batchesPerEpoch + batchesDone)
    do {
      try saveCheckpoint(to: path, epochsDone: nil)
      stepCheckpoints.append(path)
      if stepCheckpoints.count > 2 { try? FileManager.default.removeItem(atPath: stepCheckpoints.removeFirst()) }
    } catch {
      log("could not save the checkpoint at epoch \(epoch) batch \(batchesDone): \(error)")
    }
  }
}
