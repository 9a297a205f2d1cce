import Foundation
import Learning
import Wire

/// A worker's checkpoints: the consistent cuts taken when a marker passes (every epoch's end,
/// and every N batches with `daemon.checkpointEverySteps`), and its last weights when it leaves.
/// Every file is written atomically.
extension Worker {
  /// Checkpoint paths: the final weights, an interrupted run's last weights, and the
  /// consistent cuts at each epoch's end (and mid-epoch, with `daemon.checkpointEverySteps`).
  func finalCheckpointPath(_ s: StageSession) -> String {
    "\(s.assignment.runDirectory)/stage-\(s.assignment.stage).safetensors"
  }
  func interruptedCheckpointPath(_ s: StageSession) -> String {
    "\(s.assignment.runDirectory)/stage-\(s.assignment.stage).last.safetensors"
  }

  func saveCheckpoint(_ s: StageSession, to path: String, epochsDone: Int?) throws {
    var metadata = s.config.checkpointMetadata.merging([
      "step": "\(s.machine.step)", "job": "\(s.assignment.job)",
    ]) { $1 }
    if let epochsDone { metadata["epoch"] = "\(epochsDone)" }
    try s.stage.save(to: path, metadata: metadata)
  }

  /// The cut a marker asks for.
  func save(_ cut: StageRun.Checkpoint, _ s: StageSession) throws {
    switch cut {
    case .step(let epoch, let done): try saveStepCheckpoint(s, epoch: epoch, batchesDone: done)
    case .epoch(let epochsDone): try saveEpochCheckpoint(s, epochsDone: epochsDone)
    }
  }

  /// At the train-end marker every stage has trained exactly the epoch's batches: a
  /// consistent cut with no global pause. Written atomically; cuts before the previous
  /// epoch's are removed.
  func saveEpochCheckpoint(_ s: StageSession, epochsDone: Int) throws {
    let a = s.assignment
    let path = ResumePoint.epochPath(in: a.runDirectory, stage: a.stage, epochsDone: epochsDone)
    try saveOrFail(s, path, epochsDone: epochsDone, what: "the epoch \(epochsDone) checkpoint")
    // Kept: this cut and the one an epoch before, with what lies between.
    ResumePoint.prune(
      in: a.runDirectory, stage: a.stage, batchesPerEpoch: a.batchesPerEpoch,
      before: (epochsDone - 1) * a.batchesPerEpoch)
  }

  /// Saves, or tells the scheduler why it could not and fails: a run must not go on (and end
  /// "finished") with weights that are not on disk.
  func saveOrFail(_ s: StageSession, _ path: String, epochsDone: Int?, what: String) throws {
    do {
      try saveCheckpoint(s, to: path, epochsDone: epochsDone)
    } catch {
      let reason =
        "stage \(s.assignment.stage) could not save \(what) (\(path)): \(error); free space or fix "
        + "the run directory's permissions, then resume"
      log(reason)
      try? sendControl(Message(kind: .error, body: ErrorBody(message: reason)))
      throw RuntimeError(reason)
    }
  }

  /// Mid-epoch cuts each stage keeps: enough that the last stage's newest cut is still among
  /// the first stage's, however far ahead the first stage is (at most `maxInFlight` batches,
  /// so ⌈maxInFlight / every⌉ cuts), plus one.
  static func stepCutsToKeep(maxInFlight: Int, every: Int) -> Int {
    guard every > 0 else { return 2 }
    return max(2, (maxInFlight + every - 1) / every + 1)
  }

  /// A mid-epoch checkpoint marker: the same consistent cut as at an epoch's end, named by
  /// the global training step; this process keeps its last `stepCutsToKeep`.
  func saveStepCheckpoint(_ s: StageSession, epoch: Int, batchesDone: Int) throws {
    let a = s.assignment
    let path = ResumePoint.stepPath(
      in: a.runDirectory, stage: a.stage, step: epoch * a.batchesPerEpoch + batchesDone)
    try saveOrFail(
      s, path, epochsDone: nil, what: "the checkpoint at epoch \(epoch) batch \(batchesDone)")
    stepCheckpoints.append(path)
    let keep = Self.stepCutsToKeep(
      maxInFlight: a.maxInFlight ?? 0, every: s.config.daemon.checkpointEverySteps)
    while stepCheckpoints.count > keep {
      try? FileManager.default.removeItem(atPath: stepCheckpoints.removeFirst())
    }
  }
}
