import Foundation
import Learning

/// The one-command local cluster: the scheduler in this process and one worker process per
/// stage, on this machine. Children are watched while the job runs and always reaped. When a
/// worker dies, the launcher stops the job (the others save), and — up to `restarts` times —
/// resumes it from the newest epoch checkpoint with fresh workers.
public final class Launcher {
  let makeScheduler: (ResumePoint?) throws -> Scheduler
  var scheduler: Scheduler
  let executable: String
  let log: @Sendable (String) -> Void
  let restarts: Int
  var children: [Process] = []

  /// One attempt, no restarts (benchmarks).
  public convenience init(scheduler: Scheduler, executable: String, log: @escaping @Sendable (String) -> Void) {
    self.init(first: scheduler, restarts: 0, executable: executable, log: log) { _ in scheduler }
  }

  /// `makeScheduler(resume)` builds the scheduler of each further attempt.
  public init(
    first: Scheduler, restarts: Int, executable: String, log: @escaping @Sendable (String) -> Void,
    makeScheduler: @escaping (ResumePoint?) throws -> Scheduler
  ) {
    scheduler = first
    self.restarts = restarts
    self.makeScheduler = makeScheduler
    self.executable = executable
    self.log = log
  }

  /// This process's own binary (workers run the same build).
  public static var currentExecutable: String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
  }

  public func run() throws -> Scheduler.Outcome {
    while true {
      do {
        return try attempt()
      } catch let failure as WorkerFailure where scheduler.recoveries.count < restarts {
        let noticed = ContinuousClock.now
        reapChildren()
        let directory = scheduler.directory.path
        let resume = try? ResumePoint.find(in: directory, stageCount: scheduler.config.stages.count)
        try (resume ?? ResumePoint(epochsDone: 0, checkpoints: [])).trimLogs(in: directory)
        scheduler.directory.reopenLogs()
        let (fed, inFlight) = scheduler.batchesFed(since: resume?.epochsDone ?? 0)
        log("\(failure); restarting from \(resume.map { "epoch \($0.epochsDone)" } ?? "the start") (\(fed) batches to train again)")
        var recoveries = scheduler.recoveries
        recoveries.append(Recovery(
          stage: failure.stage, reason: failure.reason, detectedAfterSeconds: failure.silentSeconds, recoverySeconds: nil,
          resumedAfterEpoch: resume?.epochsDone ?? 0, batchesRetrained: fed, batchesInFlight: inFlight))
        scheduler = try makeScheduler(resume)
        scheduler.recoveries = recoveries
        pendingRecoveryStart = noticed
      }
    }
  }

  /// When the failure being recovered from was noticed (its recovery ends at the next START).
  var pendingRecoveryStart: ContinuousClock.Instant?

  func attempt() throws -> Scheduler.Outcome {
    try scheduler.bind()
    defer { reapChildren() }
    children = []
    for stage in 0..<scheduler.config.stages.count { try spawnWorker(stage: stage) }
    return try scheduler.run { phase in
      if phase == .running, let noticed = self.pendingRecoveryStart, !self.scheduler.recoveries.isEmpty {
        self.scheduler.recoveries[self.scheduler.recoveries.count - 1].recoverySeconds = (ContinuousClock.now - noticed).seconds
        self.pendingRecoveryStart = nil
      }
      guard phase != .stopping && phase != .done else { return }
      for (stage, child) in self.children.enumerated() where !child.isRunning {
        throw WorkerFailure(
          stage: stage, reason: "worker pid \(child.processIdentifier) exited with status \(child.terminationStatus)",
          silentSeconds: self.scheduler.silentSeconds(stage: stage))
      }
    }
  }

  func spawnWorker(stage: Int) throws {
    let child = Process()
    child.executableURL = URL(fileURLWithPath: executable)
    child.arguments = ["worker", "--scheduler", scheduler.controlEndpoint, "--stage", "\(stage)"]
    var environment = ProcessInfo.processInfo.environment
    environment["STAGEWISE_MANAGED"] = "1"  // Ctrl-C is the launcher's to handle
    environment["OPENBLAS_NUM_THREADS"] = "\(scheduler.config.training.threads)"
    child.environment = environment
    try child.run()
    children.append(child)
  }

  /// Gives the workers time to save and leave, then kills whatever remains; reaps all.
  func reapChildren() {
    let deadline = ContinuousClock.now + .seconds(20)
    while children.contains(where: \.isRunning), ContinuousClock.now < deadline {
      Thread.sleep(forTimeInterval: 0.05)
    }
    for child in children where child.isRunning {
      log("worker pid \(child.processIdentifier) did not exit; killing it")
      kill(child.processIdentifier, SIGKILL)
    }
    for child in children { child.waitUntilExit() }
  }
}
