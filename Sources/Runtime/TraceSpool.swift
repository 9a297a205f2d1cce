import Foundation
import Learning
import Telemetry

/// Trace events on disk while a run lasts (one JSON object a line), turned into one Chrome
/// trace file at the end, streaming: the scheduler never holds a long run's trace in memory.
final class TraceSpool {
  let path: String
  private var handle: FileHandle?
  private let encoder = JSONEncoder.stagewise(pretty: false)

  init(path: String) { self.path = path }

  func append(_ events: [TraceEvent]) {
    if handle == nil {
      _ = FileManager.default.createFile(atPath: path, contents: nil)
      handle = FileHandle(forWritingAtPath: path)
    }
    var data = Data()
    for event in events {
      guard let line = try? encoder.encode(event) else { continue }
      data.append(line)
      data.append(0x0A)
    }
    try? handle?.write(contentsOf: data)
  }

  /// Writes `{"traceEvents": [head…, spooled…], "displayTimeUnit": "ms"}` to `target`
  /// atomically, then removes the spool.
  func assemble(head: [TraceEvent], into target: String) throws {
    try? handle?.close()
    handle = nil
    let temporary = "\(target).tmp-\(getpid())"
    _ = FileManager.default.createFile(atPath: temporary, contents: nil)
    guard let out = FileHandle(forWritingAtPath: temporary) else {
      throw RuntimeError("cannot write \(temporary): check free space and permissions")
    }
    var first = true
    func emit(_ json: Data) throws {
      try out.write(contentsOf: Data((first ? "{\"traceEvents\":[\n" : ",\n").utf8))
      try out.write(contentsOf: json)
      first = false
    }
    for event in head { try emit(try encoder.encode(event)) }
    if let reader = FileHandle(forReadingAtPath: path) {
      var pending = Data()
      while let chunk = try reader.read(upToCount: 1 << 20), !chunk.isEmpty {
        pending.append(chunk)
        while let newline = pending.firstIndex(of: 0x0A) {
          let line = pending[pending.startIndex..<newline]
          if !line.isEmpty { try emit(Data(line)) }
          pending.removeSubrange(pending.startIndex...newline)
        }
      }
      try reader.close()
    }
    try out.write(
      contentsOf: Data(
        ((first ? "{\"traceEvents\":[" : "") + "\n],\"displayTimeUnit\":\"ms\"}\n").utf8))
    try out.synchronize()
    try out.close()
    guard rename(temporary, target) == 0 else {
      throw RuntimeError("cannot move \(temporary) to \(target)")
    }
    try? FileManager.default.removeItem(atPath: path)
  }
}
