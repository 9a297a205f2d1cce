import Foundation

/// A run's folder: the resolved config, `metrics.jsonl`, and the final stage weights.
public final class RunDirectory {
  public let path: String
  private let metrics: FileHandle

  /// Creates `path` (and parents) and writes the resolved config into it.
  public init(path: String, config: RunConfig) throws {
    self.path = path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    try AtomicFile.write(config.yaml(), to: "\(path)/config.yaml")
    let metricsPath = "\(path)/metrics.jsonl"
    if !FileManager.default.fileExists(atPath: metricsPath) {
      _ = FileManager.default.createFile(atPath: metricsPath, contents: nil)
    }
    guard let handle = FileHandle(forWritingAtPath: metricsPath) else {
      throw AtomicFile.WriteError(path: metricsPath, operation: "open", errno: errno)
    }
    handle.seekToEndOfFile()
    metrics = handle
  }

  deinit { try? metrics.close() }

  /// A fresh folder name under `runs/` for a run called `name`.
  public static func defaultPath(name: String, now: Date = Date()) -> String {
    let formatter = DateFormatter()
    formatter.dateFormat = "yyyyMMdd-HHmmss"
    formatter.timeZone = TimeZone(identifier: "UTC")
    return "runs/\(name)-\(formatter.string(from: now))"
  }

  /// Appends one JSON object as a line of `metrics.jsonl`.
  public func record<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    var line = try encoder.encode(value)
    line.append(0x0A)
    metrics.write(line)
  }

  /// Path of stage `index`'s weights file.
  public func stageWeightsPath(_ index: Int) -> String { "\(path)/stage-\(index).safetensors" }
}
