import Foundation
import Learning
import Memory
import Telemetry
import Wire

/// What the scheduler does for its machine: sends, the feed, ASSIGN, the rollback of the run
/// directory, the epoch's files, and the end of the run.
extension Scheduler {
  func perform(_ action: SchedulerMachine.Action) throws {
    switch action {
    case .send(let identity, let message): try sockets.control.send([identity] + message.encode())
    case .connectFeed(let replicas):
      try sockets.connectFeed(to: replicas, highWaterMark: config.daemon.highWaterMark)
      feedRouter = replicas.count > 1 ? ReplicaRouter(replicas: replicas.count) : nil
    case .acknowledged(let ack):
      let now = WallClock.micros()
      if feedRouter?.isDropped(Int(ack.replica)) == true { return }  // late, from the dead
      if feedRouter?.acknowledged(ack.sequence, by: Int(ack.replica), atMicros: now) != true {
        rejections.add(
          "unexpected", "an ACK at the sink for sequence \(ack.sequence), which was not fed there")
      }
    case .dropFeedReplica(let r): try dropFeedReplica(r)
    case .disconnectFeed:
      sockets.disconnectFeed()
      pendingFeed = nil
    case .assignAll: try assignAll()
    case .rollBack: try apply(.rolledBack(try rewind()))
    case .started:
      startedAt = .now
      terminal.restart()
      try writeManifest(state: "running", detail: nil)
    case .epochClosed(let report, let epoch): try record(report, epoch: epoch)
    case .manifest(let state, let detail): try writeManifest(state: state, detail: detail)
    case .vacancy(let stage): try onVacancy?(stage)
    case .reject(let reason, let detail): rejections.add(reason, detail)
    case .log(let line): log(line)
    case .trace(let events): traceSpool.append(events)
    }
  }

  /// Every stage has a worker again: rewind the run directory to the newest cut every stage
  /// checkpointed (or to the start), dropping the logs of what is trained again.
  func rewind() throws -> ResumePoint {
    let (stages, perEpoch) = (config.stages.count, machine.run.plan.trainOrder.batchesPerEpoch)
    let point =
      ResumePoint.newest(in: directory.path, stageCount: stages, batchesPerEpoch: perEpoch)
      ?? ResumePoint(epochsDone: 0, checkpoints: [])
    try point.rewind(directory.path, stageCount: stages, batchesPerEpoch: perEpoch)
    directory.reopenLogs()
    return point
  }

  /// An epoch closed: its lines in the run directory and on the terminal.
  func record(_ epochReport: EpochReport, epoch: Int) throws {
    lastEpochAt = .now
    try directory.record(epochReport)
    let test = epochReport.test
    let stages = test.stages ?? Array(test.stageAccuracy.indices)
    for (i, accuracy) in test.stageAccuracy.enumerated() {
      let line = EvalLine(
        epoch: epoch, stage: stages[i], accuracy: accuracy, loss: test.stageLoss[i])
      try directory.record(line, in: "eval.jsonl")
    }
    terminal.clear()
    report(EpochReport.line(epochReport, of: machine.run.plan.epochsPerPhase))
    Allocator.returnFreedMemory()
    if onEpoch?(epochReport) == true { try apply(.stopAfterEpoch) }
    try writeManifest(state: "running", detail: nil)
  }

  /// The loop has ended: a failure is thrown; a finished run writes its trace and says
  /// whether every stage's final weights reached the disk.
  func finish() throws -> Outcome {
    if let failure = machine.failure { throw RuntimeError(failure) }
    try writeTrace()
    let byes = machine.byes
    let unsaved = byes.keys.sorted().compactMap { byes[$0]?.saveError }
    // A finished run whose final weights did not all reach the disk has not finished: say so.
    if !machine.interrupted, !unsaved.isEmpty {
      let detail =
        unsaved.joined(separator: "; ")
        + "; the epoch \(machine.epochsCompleted) checkpoints hold the same weights: free space "
        + "or fix the run directory's permissions, then `stagewise launch --resume "
        + "\(directory.path)`"
      try writeManifest(state: "failed", detail: detail)
      throw RuntimeError(detail)
    }
    let detail = unsaved.isEmpty ? nil : unsaved.joined(separator: "; ")
    try writeManifest(state: machine.interrupted ? "interrupted" : "finished", detail: detail)
    return Outcome(
      reports: machine.run.reports, byes: byes, interrupted: machine.interrupted,
      rejected: rejected, stageRejected: byes.mapValues(\.rejected))
  }
}
