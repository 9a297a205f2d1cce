/// Messages a worker has sent but its sockets could not take yet, in the order they were
/// sent: a send that would block waits here while the worker's one loop goes on (control,
/// heartbeats, feedback), and the loop hands it on as soon as the socket can take it. Pure:
/// the caller does the sending.
struct Outbox<Destination: Equatable> {
  private(set) var waiting: [(to: Destination, frames: [[UInt8]])] = []

  var isEmpty: Bool { waiting.isEmpty }
  /// Where the oldest waiting message goes (the socket the loop waits to be writable).
  var head: Destination? { waiting.first?.to }

  mutating func append(_ frames: [[UInt8]], to destination: Destination) {
    waiting.append((destination, frames))
  }

  /// Forgets what waits for `destination` (a replica that died).
  mutating func remove(to destination: Destination) {
    waiting.removeAll { $0.to == destination }
  }

  /// Hands messages to `send` oldest first until it refuses one (returns false): that one and
  /// those behind it wait for the next try. Returns whether the outbox is empty now.
  @discardableResult
  mutating func flush(_ send: (Destination, [[UInt8]]) throws -> Bool) rethrows -> Bool {
    while let next = waiting.first {
      guard try send(next.to, next.frames) else { return false }
      waiting.removeFirst()
    }
    return true
  }
}
