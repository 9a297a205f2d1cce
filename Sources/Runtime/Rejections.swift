import Wire

/// Messages a process refused, counted by reason (what `run.json` lists), the first few of each
/// reason logged: the one way the scheduler and the workers turn a bad message into a number.
struct Rejections {
  private(set) var counts: [String: Int] = [:]
  let log: @Sendable (String) -> Void
  static let loggedPerReason = 5

  init(log: @escaping @Sendable (String) -> Void) { self.log = log }

  mutating func add(_ reason: String, _ detail: @autoclosure () -> String) {
    counts[reason, default: 0] += 1
    if counts[reason]! <= Self.loggedPerReason { log("rejected \(detail())") }
  }

  /// The decoded message as `check` accepts it, or nil after counting why not (and telling
  /// `refused`, which may answer the peer).
  mutating func accept<T>(
    _ frames: [[UInt8]], on plane: String, refused: (WireError) -> Void = { _ in },
    _ check: (Message) throws(WireError) -> T
  ) -> T? {
    do throws(WireError) {
      return try check(try Message(frames: frames))
    } catch {
      add(error.reason, "a \(plane) message (\(error.reason)): \(error)")
      refused(error)
      return nil
    }
  }

  mutating func accept(
    _ frames: [[UInt8]], on plane: String, refused: (WireError) -> Void = { _ in }
  ) -> Message? {
    accept(frames, on: plane, refused: refused) { $0 }
  }
}
