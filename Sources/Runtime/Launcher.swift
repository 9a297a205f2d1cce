import Foundation
import ZMQ

/// The one-command local cluster: the scheduler in this process and one worker process per
/// stage, on this machine. Children are watched while the job runs and always reaped. A
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
    for stage in 0..<scheduler.config.stages.count { try spawnWorker(stage: stage) }
    scheduler.onVacancy = { [unowned self] stage in try spawnWorker(stage: stage) }
    return try scheduler.run { phase in
      guard phase != .stopping && phase != .done, let (stage, pid, status) = self.workers.exited()
      else { return nil }
      return WorkerFailure(
        stage: stage, reason: "worker pid \(pid) exited with status \(status)",
        silentSeconds: self.scheduler.silentSeconds(stage: stage))
    }
  }

  func spawnWorker(stage: Int) throws {
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
      stage: stage, executable: executable,
      arguments: ["worker", "--scheduler", scheduler.controlEndpoint, "--stage", "\(stage)"],
      environment: environment)
  }
}
