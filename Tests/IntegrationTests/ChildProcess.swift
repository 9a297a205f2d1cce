import Foundation

/// Runs a built product as a child process with a bounded wait; the child is killed and
/// reaped if it overruns. Output goes through files, so a chatty child never blocks on a pipe.
struct ChildProcess {
  struct Result {
    var status: Int32
    var stdout: String
    var stderr: String
    var timedOut: Bool
  }

  /// The folder holding the built products (this test binary's own folder).
  static let productsDirectory: URL = {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var url = URL(fileURLWithPath: exe).deletingLastPathComponent()
    // On Linux the test binary sits directly in the products folder; on macOS inside a bundle.
    while !FileManager.default.fileExists(atPath: url.appendingPathComponent("stagewise").path), url.path != "/" {
      url = url.deletingLastPathComponent()
    }
    return url
  }()

  static func stagewise(_ arguments: [String], timeout: Duration = .seconds(120), directory: String? = nil) throws -> Result {
    try run(productsDirectory.appendingPathComponent("stagewise").path, arguments, timeout: timeout, directory: directory)
  }

  static func run(_ path: String, _ arguments: [String], timeout: Duration, directory: String? = nil) throws -> Result {
    let scratch = NSTemporaryDirectory() + "stagewise-child-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    let outPath = scratch + "/out", errPath = scratch + "/err"
    FileManager.default.createFile(atPath: outPath, contents: nil)
    FileManager.default.createFile(atPath: errPath, contents: nil)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    try process.run()
    let deadline = ContinuousClock.now + timeout
    var timedOut = false
    while process.isRunning {
      if ContinuousClock.now > deadline {
        timedOut = true
        kill(process.processIdentifier, SIGKILL)
        break
      }
      Thread.sleep(forTimeInterval: 0.02)
    }
    process.waitUntilExit()  // reaps the child
    return Result(
      status: process.terminationStatus,
      stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
      stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "",
      timedOut: timedOut)
  }
}
