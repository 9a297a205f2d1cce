import Foundation
import Learning
import ZMQ

/// The one-command local cluster: the scheduler in this process and one worker process per
/// stage replica, on this machine. Children are watched while the job runs and always reaped. A
/// worker that dies is replaced by a fresh one; the scheduler rolls every stage back to the
/// newest epoch checkpoint (up to `daemon.restarts` times).
public final class Launcher {
  let scheduler: Scheduler
  let executable: String
  let workers: StageProcesses

  public init(scheduler: Scheduler, executable: String, log: @escaping @Sendable (String) -> Void) {
    self.scheduler = scheduler
    self.executable = executable
    workers = StageProcesses(log: log)
  }

  /// This process's own binary (workers run the same build).
  public static var currentExecutable: String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
      ?? CommandLine.arguments[0]
  }

  public func run() throws -> Scheduler.Outcome {
    try scheduler.bind()
    defer { workers.reapAll() }
    // One child per slot (a stage's replica), under the slot's number.
    let layout = ReplicaLayout(scheduler.config)
    for slot in 0..<layout.slotCount { try spawnWorker(slot: slot, layout: layout) }
    var dead: [Int: [Int]] = [:]  // by stage, the slots whose child died, to start again
    scheduler.onVacancy = { [unowned self] stage in
      let slot = dead[stage]?.popLast() ?? layout.slots(ofStage: stage).lowerBound
      try spawnWorker(slot: slot, layout: layout)
    }
    return try scheduler.run { phase in
      guard phase != .stopping && phase != .done, let (slot, pid, status) = self.workers.exited()
      else { return nil }
      if self.scheduler.left(pid: pid) {  // a replica that left at a cut: gone as it should be
        self.workers.retire(stage: slot)
        return nil
      }
      let stage = layout.place(ofSlot: slot).stage
      if !(dead[stage]?.contains(slot) ?? false) { dead[stage, default: []].append(slot) }
      return WorkerFailure(
        stage: stage, reason: "worker pid \(pid) exited with status \(status)",
        silentSeconds: self.scheduler.silentSeconds(pid: pid), pid: pid)
    }
  }

  func spawnWorker(slot: Int, layout: ReplicaLayout) throws {
    let stage = layout.place(ofSlot: slot).stage
    var environment = [
      "STAGEWISE_MANAGED": "1",  // Ctrl-C is the launcher's to handle
      "OPENBLAS_NUM_THREADS": "\(scheduler.config.training.threads)",
    ]
    if let schedulerKeys = scheduler.curveKeys {  // CURVE: a key of its own, made for this worker
      let keys = try CurveKeyPair.generate()
      scheduler.allowWorkers([keys.publicKey])
      environment["STAGEWISE_KEY"] = keys.secretKey
      environment["STAGEWISE_SCHEDULER_KEY"] = schedulerKeys.publicKey
    }
    try workers.start(
      stage: slot, executable: executable,
      arguments: ["worker", "--scheduler", scheduler.controlEndpoint, "--stage", "\(stage)"],
      environment: environment)
  }
}
