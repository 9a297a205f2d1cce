import Foundation
import Runtime
import TestSupport

/// A built product running as a child process. Every wait is bounded; a child that overruns is
/// killed, and every child is reaped. Output goes through files, so a chatty child never
/// blocks on a pipe.
final class ChildProcess {
  struct Result {
    var status: Int32
    var stdout: String
    var stderr: String
    var timedOut: Bool
  }

  /// The folder holding the built products (this test binary's own folder, or a parent).
  static let productsDirectory: URL = {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var url = URL(fileURLWithPath: exe).deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: url.appendingPathComponent("stagewise").path), url.path != "/" {
      url = url.deletingLastPathComponent()
    }
    return url
  }()

  static var stagewisePath: String { productsDirectory.appendingPathComponent("stagewise").path }

  let process = Process()
  let scratch: String
  var finished: Result?

  /// Starts `stagewise ARGUMENTS`.
  convenience init(stagewise arguments: [String], environment: [String: String] = [:], directory: String? = nil) throws {
    try self.init(executable: Self.stagewisePath, arguments, environment: environment, directory: directory)
  }

  /// Starts any program (`ip netns exec HOST stagewise …` for the multi-host test).
  init(executable: String, _ arguments: [String], environment: [String: String] = [:], directory: String? = nil) throws {
    scratch = try temporaryDirectory("child")
    FileManager.default.createFile(atPath: scratch + "/out", contents: nil)
    FileManager.default.createFile(atPath: scratch + "/err", contents: nil)
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: scratch + "/out"))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: scratch + "/err"))
    try process.run()
  }

  deinit {
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    process.waitForExit(within: .seconds(10))
    try? FileManager.default.removeItem(atPath: scratch)
  }

  var pid: Int32 { process.processIdentifier }
  var stdout: String { (try? String(contentsOfFile: scratch + "/out", encoding: .utf8)) ?? "" }
  var stderr: String { (try? String(contentsOfFile: scratch + "/err", encoding: .utf8)) ?? "" }

  func signal(_ signal: Int32) { kill(process.processIdentifier, signal) }

  /// Waits at most `timeout`; kills the child if it is still running then. Always reaps.
  @discardableResult
  func wait(timeout: Duration) -> Result {
    if let finished { return finished }
    let timedOut = !process.waitForExit(within: timeout)
    if timedOut { kill(process.processIdentifier, SIGKILL) }
    let reaped = process.waitForExit(within: .seconds(10))
    let result = Result(status: reaped ? process.terminationStatus : -1, stdout: stdout, stderr: stderr, timedOut: timedOut)
    finished = result
    return result
  }

  /// Runs `stagewise ARGUMENTS` to the end (bounded).
  static func stagewise(_ arguments: [String], timeout: Duration = .seconds(120), environment: [String: String] = [:]) throws -> Result {
    try ChildProcess(stagewise: arguments, environment: environment).wait(timeout: timeout)
  }
}

/// Polls `condition` every 20 ms for at most `timeout`.
func eventually(timeout: Duration, _ condition: () -> Bool) -> Bool {
  let deadline = ContinuousClock.now + timeout
  while ContinuousClock.now < deadline {
    if condition() { return true }
    Thread.sleep(forTimeInterval: 0.02)
  }
  return condition()
}

/// Whether a process with `pid` still exists (a zombie counts as gone: it has exited).
func processExists(_ pid: Int32) -> Bool {
  guard kill(pid, 0) == 0 else { return false }
  let status = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
  return !status.contains(") Z ")
}
