import Foundation

/// The processes this process started for stages — workers, or a command that starts one
/// elsewhere (`srun`, `ssh`) — watched while the job runs, replaced, and always reaped.
public final class StageProcesses {
  var current: [Int: Process] = [:]
  /// Replaced ones, killed if still running, reaped at the end.
  var retired: [Process] = []
  let log: @Sendable (String) -> Void

  public init(log: @escaping @Sendable (String) -> Void) { self.log = log }

  /// Starts `executable arguments` for `stage`; the one it replaces (if any) is killed.
  public func start(
    stage: Int, executable: String, arguments: [String], environment: [String: String]
  ) throws {
    retire(stage: stage)
    let child = Process()
    child.executableURL = URL(fileURLWithPath: executable)
    child.arguments = arguments
    child.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    try child.run()
    current[stage] = child
  }

  /// A stage whose process has exited, with how.
  public func exited() -> (stage: Int, pid: Int32, status: Int32)? {
    guard
      let (stage, child) = current.sorted(by: { $0.key < $1.key }).first(where: {
        !$0.value.isRunning
      })
    else { return nil }
    return (stage, child.processIdentifier, child.terminationStatus)
  }

  func retire(stage: Int) {
    guard let old = current.removeValue(forKey: stage) else { return }
    if old.isRunning { kill(old.processIdentifier, SIGKILL) }
    retired.append(old)
  }

  /// Gives every process `grace` to leave on its own, kills what remains, reaps all.
  public func reapAll(grace: Duration = .seconds(20)) {
    let all = Array(current.values) + retired
    let deadline = ContinuousClock.now + grace
    while all.contains(where: \.isRunning), ContinuousClock.now < deadline {
      Thread.sleep(forTimeInterval: 0.05)
    }
    for child in all where child.isRunning {
      log("pid \(child.processIdentifier) did not exit; killing it")
      kill(child.processIdentifier, SIGKILL)
    }
    for child in all where !child.waitForExit(within: .seconds(10)) {
      log("pid \(child.processIdentifier) outlived SIGKILL by 10 s; leaving it")
    }
    (current, retired) = ([:], [])
  }
}
