import Foundation
import Learning

/// Where a stopped or crashed run continues: the newest consistent cut every stage
/// checkpointed — at an epoch's train-end marker, or at a mid-epoch checkpoint marker — and
/// those checkpoint files. Files are named by stage and by the global training step of the
/// cut: `stage-K.epoch-N.safetensors` (step N × batches per epoch) and
/// `stage-K.step-S.safetensors`.
public struct ResumePoint: Sendable, Equatable {
  public var epochsDone: Int
  /// Training batches of the next epoch already done (a mid-epoch cut; 0 at an epoch's end).
  public var batchesDone = 0
  public var checkpoints: [String]
  /// Newer cuts passed over because one of their files was damaged: each file and why.
  public var skipped: [String] = []

  public init(epochsDone: Int, batchesDone: Int = 0, checkpoints: [String]) {
    (self.epochsDone, self.batchesDone, self.checkpoints) = (epochsDone, batchesDone, checkpoints)
  }

  public static func epochPath(in runDirectory: String, stage: Int, epochsDone: Int) -> String {
    "\(runDirectory)/stage-\(stage).epoch-\(epochsDone).safetensors"
  }

  public static func stepPath(in runDirectory: String, stage: Int, step: Int) -> String {
    "\(runDirectory)/stage-\(stage).step-\(step).safetensors"
  }

  /// Finds the resume point of `runDirectory` for `stageCount` stages (mid-epoch cuts count
  /// when `batchesPerEpoch` is given); every file it picks is read once so a damaged one is
  /// named before any process starts.
  public static func find(in runDirectory: String, stageCount: Int, batchesPerEpoch: Int? = nil)
    throws -> ResumePoint
  {
    let (point, skipped) = newestIntact(
      in: runDirectory, stageCount: stageCount, batchesPerEpoch: batchesPerEpoch)
    guard let point else {
      let held = cuts(in: runDirectory, stageCount: stageCount, batchesPerEpoch: batchesPerEpoch)
        .enumerated().map { "stage \($0.offset): \($0.element.keys.sorted())" }.joined(
          separator: ", ")
      let damaged = skipped.isEmpty ? "" : "; damaged: " + skipped.joined(separator: "; ")
      throw RuntimeError(
        "\(runDirectory) has no epoch that every stage checkpointed intact (\(held))\(damaged): "
          + "nothing to resume from"
      )
    }
    return point
  }

  /// The newest cut every stage checkpointed, or nil when there is none yet. A cut counts
  /// only when every epoch before it was reported in `metrics.jsonl`: a run stopped between
  /// an epoch's checkpoints and the end of its evaluation continues from the cut before, so
  /// that no epoch is missing from the logs.
  ///
  /// Every file of the cut is read (and its checksum checked) first; a cut with a damaged
  /// file is passed over for the next older one, and the point says which files it skipped.
  public static func newest(in runDirectory: String, stageCount: Int, batchesPerEpoch: Int? = nil)
    -> ResumePoint?
  {
    newestIntact(in: runDirectory, stageCount: stageCount, batchesPerEpoch: batchesPerEpoch).point
  }

  static func newestIntact(in runDirectory: String, stageCount: Int, batchesPerEpoch: Int?) -> (
    point: ResumePoint?, skipped: [String]
  ) {
    let cuts = cuts(in: runDirectory, stageCount: stageCount, batchesPerEpoch: batchesPerEpoch)
    let common = cuts.dropFirst().reduce(Set(cuts.first?.keys ?? [:].keys)) {
      $0.intersection($1.keys)
    }
    let reported =
      ((try? String(contentsOfFile: "\(runDirectory)/metrics.jsonl", encoding: .utf8)) ?? "")
      .split(separator: "\n").count
    var skipped: [String] = []
    let perEpoch = batchesPerEpoch ?? 1
    for step in common.filter({ $0 / perEpoch <= reported }).sorted(by: >) {
      let checkpoints = cuts.map { $0[step]! }
      let damaged = checkpoints.compactMap { path -> String? in
        do {
          _ = try Safetensors.read(path)
          return nil
        } catch {
          return "\(error)"
        }
      }
      guard damaged.isEmpty else {
        skipped += damaged
        continue
      }
      var point =
        batchesPerEpoch == nil
        ? ResumePoint(epochsDone: step, checkpoints: checkpoints)
        : ResumePoint(
          epochsDone: step / perEpoch, batchesDone: step % perEpoch, checkpoints: checkpoints)
      point.skipped = skipped
      return (point, skipped)
    }
    return (nil, skipped)
  }

  /// Each stage's checkpoints by global step (by epoch when `batchesPerEpoch` is nil: then
  /// mid-epoch files are left out). An epoch's file wins over a step file of the same cut.
  static func cuts(in runDirectory: String, stageCount: Int, batchesPerEpoch: Int?) -> [[Int:
    String]]
  {
    let files = (try? FileManager.default.contentsOfDirectory(atPath: runDirectory)) ?? []
    var cuts: [[Int: String]] = Array(repeating: [:], count: stageCount)
    for file in files.sorted() {
      // stage-K.epoch-N.safetensors or stage-K.step-S.safetensors
      let parts = file.split(separator: ".")
      guard parts.count == 3, parts[2] == "safetensors", parts[0].hasPrefix("stage-"),
        let stage = Int(parts[0].dropFirst(6)), cuts.indices.contains(stage)
      else { continue }
      if parts[1].hasPrefix("epoch-"), let epoch = Int(parts[1].dropFirst(6)) {
        cuts[stage][epoch * (batchesPerEpoch ?? 1)] = "\(runDirectory)/\(file)"
      } else if let batchesPerEpoch, parts[1].hasPrefix("step-"),
        let step = Int(parts[1].dropFirst(5))
      {
        if step % batchesPerEpoch != 0 || cuts[stage][step] == nil {
          cuts[stage][step] = "\(runDirectory)/\(file)"
        }
      }
    }
    return cuts
  }

  /// The global training step of this cut.
  public func step(batchesPerEpoch: Int) -> Int { epochsDone * batchesPerEpoch + batchesDone }

  /// Where training continues, for people: "epoch 6", "epoch 6 + 15 batches", "the start".
  public var description: String {
    batchesDone > 0
      ? "epoch \(epochsDone) + \(batchesDone) batches"
      : epochsDone == 0 ? "the start" : "epoch \(epochsDone)"
  }

  /// Makes `runDirectory` what it was at this cut: the checkpoints of later cuts go (the run
  /// writes them again), and so do the log lines of the epochs trained again.
  public func rewind(_ runDirectory: String, stageCount: Int, batchesPerEpoch: Int) throws {
    let resumeStep = step(batchesPerEpoch: batchesPerEpoch)
    Self.removeCheckpoints(
      in: runDirectory, stages: 0..<stageCount, batchesPerEpoch: batchesPerEpoch
    ) { $0 > resumeStep }
    // A worker killed while saving leaves its temporary file (never the checkpoint's name): gone.
    AtomicFile.removeUnfinished(in: runDirectory, suffix: ".safetensors")
    try trimLogs(in: runDirectory)
  }

  /// Removes stage `stage`'s checkpoints of cuts before global step `step`.
  public static func prune(
    in runDirectory: String, stage: Int, batchesPerEpoch: Int, before step: Int
  ) {
    removeCheckpoints(
      in: runDirectory, stages: stage..<(stage + 1), batchesPerEpoch: batchesPerEpoch
    ) { $0 < step }
  }

  /// Removes the checkpoints of `stages` whose cut (global step) `drop` picks.
  static func removeCheckpoints(
    in runDirectory: String, stages: Range<Int>, batchesPerEpoch: Int, where drop: (Int) -> Bool
  ) {
    let all = cuts(
      in: runDirectory, stageCount: stages.upperBound, batchesPerEpoch: batchesPerEpoch)
    for stage in stages {
      for (cut, path) in all[stage] where drop(cut) {
        try? FileManager.default.removeItem(atPath: path)
      }
    }
  }

  /// Drops log lines of epochs at or after the resume point (they are trained again).
  func trimLogs(in runDirectory: String) throws {
    let metricsPath = "\(runDirectory)/metrics.jsonl"
    let evalPath = "\(runDirectory)/eval.jsonl"
    let metrics = ((try? String(contentsOfFile: metricsPath, encoding: .utf8)) ?? "").split(
      separator: "\n")
    let eval = ((try? String(contentsOfFile: evalPath, encoding: .utf8)) ?? "").split(
      separator: "\n")
    let evalPerEpoch = metrics.isEmpty ? 0 : eval.count / metrics.count
    try AtomicFile.write(metrics.prefix(epochsDone).map { $0 + "\n" }.joined(), to: metricsPath)
    try AtomicFile.write(
      eval.prefix(epochsDone * evalPerEpoch).map { $0 + "\n" }.joined(), to: evalPath)
  }
}
