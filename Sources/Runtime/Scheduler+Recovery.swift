import Foundation
import Learning
import Wire

/// Losing a worker mid-run without losing the run: its stage is vacated, the survivors are
/// reset (they drop their state and say HELLO again), a replacement is asked for, and once
/// every stage has a worker all of them restore the newest epoch checkpoint that every stage
/// wrote, under a new job id — whatever was still in flight belongs to the retired job and is
/// refused as stale — and training continues from there.
extension Scheduler {
  func recover(from failure: WorkerFailure, timeout: Duration, tick: (Phase) throws -> Void) throws {
    log("\(failure); waiting for a worker to take stage \(failure.stage)")
    recoveryNoticed = recoveryNoticed ?? .now
    recoveries.append(Recovery(
      stage: failure.stage, reason: failure.reason, detectedAfterSeconds: failure.silentSeconds, recoverySeconds: nil,
      resumedAfterEpoch: 0, batchesRetrained: 0, batchesInFlight: inFlight))
    // A worker that was only silent must not come back to a stage someone else now holds.
    try? sendControl(to: failure.stage, Message(kind: .error, body: ErrorBody(message: "stage \(failure.stage) was declared dead (\(failure.reason)) and given to another worker")))
    registry.vacate(failure.stage)
    for stage in 0..<stageCount {
      try sendControl(to: stage, Message(kind: .reset, body: StopBody(reason: "stage \(failure.stage) failed: \(failure.reason)")))
    }
    jobs.retire(job)
    job = Self.newJobID()
    phase = .registering
    feed = nil
    pendingFeed = nil
    inFlight = 0
    try writeManifest(state: "recovering", detail: "\(failure)")
    try onVacancy?(failure.stage)
    try register(timeout: timeout, tick: tick)
  }

  /// Every stage has a worker again: continue from the newest epoch every stage checkpointed
  /// (or from the start), dropping the logs of the epochs that are trained again.
  func rollBack() throws {
    let perEpoch = plan.trainOrder.batchesPerEpoch
    let point =
      ResumePoint.newest(in: directory.path, stageCount: stageCount, batchesPerEpoch: perEpoch)
      ?? ResumePoint(epochsDone: 0, checkpoints: [])
    for damaged in point.skipped { log("skipped a damaged checkpoint: \(damaged)") }
    let fed = max(0, batchesFed(since: point.epochsDone).fed - point.batchesDone)
    recoveries[recoveries.count - 1].resumedAfterEpoch = point.epochsDone
    recoveries[recoveries.count - 1].resumedAfterBatches = point.batchesDone
    recoveries[recoveries.count - 1].batchesRetrained = fed
    try point.rewind(directory.path, stageCount: stageCount, batchesPerEpoch: perEpoch)
    directory.reopenLogs()
    resume = point
    plan = Self.plan(config: config, train: train, test: test, from: point)
    trainBatchesFed = trainBatchesFed.filter { $0.key < point.epochsDone }
    (reports, ledgers, sequence, stopAfterEpoch) = ([], [:], 0, false)
    liveStats = Array(repeating: nil, count: stageCount)
    log("restarting from \(point.description) (\(fed) batches to train again)")
  }
}
