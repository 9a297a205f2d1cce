import Foundation

/// A run's folder: the resolved config, JSON-lines logs (`metrics.jsonl`, `eval.jsonl`), and
/// the stage weights.
public final class RunDirectory {
  public let path: String
  private var logs: [String: FileHandle] = [:]

  /// Creates `path` (and parents) and writes the resolved config into it.
  public init(path: String, config: RunConfig) throws {
    self.path =
      (path as NSString).standardizingPath.hasPrefix("/")
      ? (path as NSString).standardizingPath
      : FileManager.default.currentDirectoryPath + "/" + (path as NSString).standardizingPath
    try FileManager.default.createDirectory(atPath: self.path, withIntermediateDirectories: true)
    try AtomicFile.write(config.yaml(), to: "\(self.path)/config.yaml")
    _ = try handle("metrics.jsonl")
  }

  deinit { for handle in logs.values { try? handle.close() } }

  /// Closes the open logs so the next record reopens them: after a log was replaced (a
  /// resume trims it atomically), appends must go to the new file.
  public func reopenLogs() {
    for handle in logs.values { try? handle.close() }
    logs = [:]
  }

  /// The open append handle of a log file in this folder.
  private func handle(_ name: String) throws -> FileHandle {
    if let handle = logs[name] { return handle }
    let file = "\(path)/\(name)"
    if !FileManager.default.fileExists(atPath: file) {
      _ = FileManager.default.createFile(atPath: file, contents: nil)
    }
    guard let handle = FileHandle(forWritingAtPath: file) else {
      throw AtomicFile.WriteError(path: file, operation: "open", errno: errno)
    }
    handle.seekToEndOfFile()
    logs[name] = handle
    return handle
  }

  /// A fresh folder name under `runs/` for a run called `name`.
  public static func defaultPath(name: String, now: Date = Date()) -> String {
    let formatter = DateFormatter()
    formatter.dateFormat = "yyyyMMdd-HHmmss"
    formatter.timeZone = TimeZone(identifier: "UTC")
    return "runs/\(name)-\(formatter.string(from: now))"
  }

  /// Appends one JSON object as a line of `file` (by default `metrics.jsonl`).
  public func record<T: Encodable>(_ value: T, in file: String = "metrics.jsonl") throws {
    var line = try JSONEncoder.stagewise(pretty: false).encode(value)
    line.append(0x0A)
    try handle(file).write(contentsOf: line)
  }

  /// Writes `value` as pretty JSON to `file`, atomically.
  public func write<T: Encodable>(_ value: T, to file: String) throws {
    try AtomicFile.write(
      Array(try JSONEncoder.stagewise(pretty: true).encode(value)), to: "\(path)/\(file)")
  }

  /// Path of stage `index`'s weights file.
  public func stageWeightsPath(_ index: Int) -> String { "\(path)/stage-\(index).safetensors" }
}

extension JSONEncoder {
  /// How Stagewise writes JSON files: sorted keys, plain slashes, and a diverged run's NaN or
  /// infinity written as a string instead of failing the write.
  public static func stagewise(pretty: Bool) -> JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting =
      pretty
      ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
      : [.sortedKeys, .withoutEscapingSlashes]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(
      positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return encoder
  }
}

extension JSONDecoder {
  /// How Stagewise reads its own JSON files back (NaN and infinity as `JSONEncoder.stagewise`
  /// writes them).
  public static var stagewise: JSONDecoder {
    let decoder = JSONDecoder()
    decoder.nonConformingFloatDecodingStrategy = .convertFromString(
      positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return decoder
  }
}
