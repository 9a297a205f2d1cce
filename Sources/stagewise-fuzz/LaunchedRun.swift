import ArgumentParser
import Foundation
import Runtime

/// `stagewise launch` as a child process: output to files, every wait bounded, killed if it
/// outlives this program's interest, always reaped.
final class LaunchedRun {
  let process = Process()

  init(binary: String, arguments: [String], logs: String) throws {
    process.executableURL = URL(fileURLWithPath: binary)
    process.arguments = arguments
    for (name, handle) in [
      ("launch.out", \Process.standardOutput), ("launch.err", \Process.standardError),
    ] {
      _ = FileManager.default.createFile(atPath: "\(logs)/\(name)", contents: nil)
      process[keyPath: handle] = try FileHandle(
        forWritingTo: URL(fileURLWithPath: "\(logs)/\(name)"))
    }
    try process.run()
  }

  deinit {
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    process.waitForExit(within: .seconds(10))
  }

  func interrupt() { kill(process.processIdentifier, SIGINT) }

  /// The exit status, or nil after killing a run still going at the deadline.
  func wait(seconds: Int) -> Int32? {
    if process.waitForExit(within: .seconds(seconds)) { return process.terminationStatus }
    kill(process.processIdentifier, SIGKILL)
    process.waitForExit(within: .seconds(10))
    return nil
  }

  /// Polls `condition` until it gives a value; fails if the run ends or the time runs out first.
  func waitFor<T>(_ what: String, seconds: Int, _ condition: () -> T?) throws -> T {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
      if let value = condition() { return value }
      guard process.isRunning else {
        throw ValidationError(
          "stagewise launch exited (status \(process.terminationStatus)) while waiting for \(what)")
      }
      Thread.sleep(forTimeInterval: 0.1)
    }
    throw ValidationError("gave up waiting \(seconds) s for \(what)")
  }
}
