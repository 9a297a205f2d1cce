/// One Chrome trace event ("X": a complete span; "M": process metadata), as Perfetto and
/// chrome://tracing read them. Times are microseconds on the scheduler's clock, from job start.
public struct TraceEvent: Codable, Sendable, Equatable {
  public var name: String
  public var cat: String
  public var ph: String
  public var ts: Double
  public var dur: Double?
  public var pid: Int
  public var tid: Int
  public var args: [String: String]?

  public init(
    name: String, category: String, start: Double, duration: Double, pid: Int, tid: Int = 0
  ) {
    (self.name, cat, ph, ts, dur, self.pid, self.tid, args) = (
      name, category, "X", start, duration, pid, tid, nil
    )
  }

  /// Names a process row in the viewer.
  public static func processName(_ name: String, pid: Int) -> TraceEvent {
    var event = TraceEvent(
      name: "process_name", category: "__metadata", start: 0, duration: 0, pid: pid)
    event.ph = "M"
    event.dur = nil
    event.args = ["name": name]
    return event
  }
}

/// Collects one process's spans, bounded so a long run cannot grow without limit; spans past
/// the bound are counted, not kept.
public struct TraceRecorder: Sendable {
  public let pid: Int
  public let capacity: Int
  public private(set) var events: [TraceEvent] = []
  public private(set) var dropped = 0
  /// Added to local wall-clock micros to get the scheduler's clock.
  public var offsetMicros: Int64 = 0
  /// The job's start on the scheduler's clock; event times are relative to it.
  public var originMicros: Int64 = 0

  public init(pid: Int, capacity: Int = 200_000) {
    self.pid = pid
    self.capacity = capacity
  }

  /// Records a span that ran from `startMicros` to `endMicros` (local wall clock).
  public mutating func record(
    _ name: String, category: String = "stage", startMicros: Int64, endMicros: Int64
  ) {
    guard events.count < capacity else {
      dropped += 1
      return
    }
    let start = Double(startMicros + offsetMicros - originMicros)
    events.append(
      TraceEvent(
        name: name, category: category, start: start, duration: Double(endMicros - startMicros),
        pid: pid))
  }

  /// Takes at most `count` events out, oldest first (to ship them in chunks).
  public mutating func drain(upTo count: Int) -> [TraceEvent] {
    let chunk = Array(events.prefix(count))
    events.removeFirst(chunk.count)
    return chunk
  }
}
