import Foundation
import Learning

/// Where a stopped or crashed run continues: the newest epoch that every stage checkpointed
/// at its train-end marker, and those checkpoint files.
public struct ResumePoint: Sendable, Equatable {
  public var epochsDone: Int
  public var checkpoints: [String]

  /// Finds the resume point of `runDirectory` for `stageCount` stages; every file it picks is
  /// read once so a damaged one is named before any process starts.
  public static func find(in runDirectory: String, stageCount: Int) throws -> ResumePoint {
    guard let point = try newest(in: runDirectory, stageCount: stageCount) else {
      let held = checkpointedEpochs(in: runDirectory, stageCount: stageCount)
        .enumerated().map { "stage \($0.offset): \($0.element.sorted())" }.joined(separator: ", ")
      throw RuntimeError("\(runDirectory) has no epoch that every stage checkpointed (\(held)): nothing to resume from")
    }
    return point
  }

  /// The newest epoch every stage checkpointed, or nil when there is none yet.
  public static func newest(in runDirectory: String, stageCount: Int) throws -> ResumePoint? {
    let epochs = checkpointedEpochs(in: runDirectory, stageCount: stageCount)
    guard let common = epochs.dropFirst().reduce(epochs.first ?? [], { $0.intersection($1) }).max() else { return nil }
    let checkpoints = (0..<stageCount).map { "\(runDirectory)/stage-\($0).epoch-\(common).safetensors" }
    for path in checkpoints { _ = try Safetensors.read(path) }
    return ResumePoint(epochsDone: common, checkpoints: checkpoints)
  }

  /// The epochs each stage has a checkpoint of.
  static func checkpointedEpochs(in runDirectory: String, stageCount: Int) -> [Set<Int>] {
    let files = (try? FileManager.default.contentsOfDirectory(atPath: runDirectory)) ?? []
    var epochs: [Set<Int>] = Array(repeating: [], count: stageCount)
    for file in files {
      // stage-K.epoch-N.safetensors
      let parts = file.split(separator: ".")
      guard parts.count == 3, parts[2] == "safetensors", parts[0].hasPrefix("stage-"), parts[1].hasPrefix("epoch-"),
        let stage = Int(parts[0].dropFirst(6)), let epoch = Int(parts[1].dropFirst(6)), epochs.indices.contains(stage)
      else { continue }
      epochs[stage].insert(epoch)
    }
    return epochs
  }

  /// Drops log lines of epochs at or after the resume point (they are trained again).
  public func trimLogs(in runDirectory: String) throws {
    let metricsPath = "\(runDirectory)/metrics.jsonl", evalPath = "\(runDirectory)/eval.jsonl"
    let metrics = ((try? String(contentsOfFile: metricsPath, encoding: .utf8)) ?? "").split(separator: "\n")
    let eval = ((try? String(contentsOfFile: evalPath, encoding: .utf8)) ?? "").split(separator: "\n")
    let evalPerEpoch = metrics.isEmpty ? 0 : eval.count / metrics.count
    try AtomicFile.write(metrics.prefix(epochsDone).map { $0 + "\n" }.joined(), to: metricsPath)
    try AtomicFile.write(eval.prefix(epochsDone * evalPerEpoch).map { $0 + "\n" }.joined(), to: evalPath)
  }
}
