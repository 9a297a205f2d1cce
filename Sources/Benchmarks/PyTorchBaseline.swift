import Foundation
import Runtime

/// The outside yardstick: `scripts/baseline/torch_baseline.py` (the CPU build of PyTorch on
/// the same model, batch and SGD recipe), run as a child process and read back as JSON.
public struct PyTorchBaseline: Sendable {
  public struct Measurement: Codable, Sendable {
    public var model: String
    public var threads: Int
    public var batchSize: Int
    public var samplesPerSecond: Double
    public var torch: String
  }

  public var python: String
  public var script: String

  /// The interpreter of `.venv-bench` (made by `scripts/baseline/setup.sh`) when present, else
  /// `python3`; the script from the working directory or beside the build folder.
  public init(python: String? = nil, script: String? = nil) {
    let executableDirectory = URL(fileURLWithPath: CommandLine.arguments[0])
      .resolvingSymlinksInPath().deletingLastPathComponent()
    let roots = [
      FileManager.default.currentDirectoryPath,
      executableDirectory.appendingPathComponent("../..").standardized.path,
    ]
    let find = { (relative: String) in
      roots.map { "\($0)/\(relative)" }.first { FileManager.default.fileExists(atPath: $0) }
    }
    self.python = python ?? find(".venv-bench/bin/python") ?? "python3"
    self.script =
      script ?? find("scripts/baseline/torch_baseline.py") ?? "scripts/baseline/torch_baseline.py"
  }

  /// One measurement, or the reason there is none (PyTorch missing, the script failed).
  public func measure(_ model: String, threads: Int, batchSize: Int, extra: [String] = [])
    -> Result<Measurement, PyTorchBaselineError>
  {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments =
      [python, script, "--model", model, "--threads", "\(threads)", "--batch-size", "\(batchSize)"]
      + extra
    let out = Pipe()
    let err = Pipe()
    (process.standardOutput, process.standardError) = (out, err)
    do { try process.run() } catch {
      return .failure(PyTorchBaselineError("cannot start \(python): \(error)"))
    }
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    // Both pipes are closed: the script has ended or is about to.
    guard process.waitForExit(within: .seconds(60)) else {
      return .failure(PyTorchBaselineError("\(script) closed its output but did not exit"))
    }
    guard process.terminationStatus == 0 else {
      let line =
        stderr.split(separator: "\n").last { !$0.contains("Warning") && !$0.hasPrefix(" ") }.map(
          String.init) ?? "exit \(process.terminationStatus)"
      return .failure(PyTorchBaselineError(line))
    }
    guard let last = stdout.split(separator: UInt8(ascii: "\n")).last,
      let measurement = try? JSONDecoder().decode(Measurement.self, from: Data(last))
    else { return .failure(PyTorchBaselineError("\(script) printed no measurement")) }
    return .success(measurement)
  }
}

public struct PyTorchBaselineError: Error, CustomStringConvertible, Sendable {
  public var description: String
  init(_ description: String) { self.description = description }
}
