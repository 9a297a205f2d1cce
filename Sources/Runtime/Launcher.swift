import Foundation
import Learning

/// The one-command local cluster: the scheduler in this process and one worker process per
/// stage, on this machine. Children are watched while the job runs and always reaped.
public final class Launcher {
  let scheduler: Scheduler
  let executable: String
  let log: @Sendable (String) -> Void
  var children: [Process] = []

  public init(scheduler: Scheduler, executable: String, log: @escaping @Sendable (String) -> Void) {
    self.scheduler = scheduler
    self.executable = executable
    self.log = log
  }

  /// This process's own binary (workers run the same build).
  public static var currentExecutable: String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
  }

  public func run() throws -> Scheduler.Outcome {
    try scheduler.bind()
    defer { reapChildren() }
    for stage in 0..<scheduler.config.stages.count { try spawnWorker(stage: stage) }
    return try scheduler.run { phase in
      guard phase != .stopping && phase != .done else { return }
      for (stage, child) in self.children.enumerated() where !child.isRunning {
        throw RuntimeError("the worker for stage \(stage) (pid \(child.processIdentifier)) exited with status \(child.terminationStatus) during the run")
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
