import Testing

@testable import Runtime

/// The worker's outbox without sockets: what a socket cannot take waits, in order, and
/// nothing behind it overtakes it.
@Suite("Outbox: sends that would block wait their turn")
struct OutboxTests {
  /// Sockets that take messages only while they are open.
  final class Sockets {
    var open: Set<String> = ["down"]
    var sent: [String] = []
    func send(_ to: String, _ frames: [[UInt8]]) -> Bool {
      guard open.contains(to) else { return false }
      sent.append("\(to) \(frames[0][0])")
      return true
    }
  }

  @Test func aRefusedMessageAndThoseBehindItWaitInOrder() {
    var outbox = Outbox<String>()
    let sockets = Sockets()
    outbox.append([[1]], to: "down")
    let first = outbox.flush(sockets.send)
    #expect(first && sockets.sent == ["down 1"] && outbox.isEmpty)
    outbox.append([[2]], to: "up")
    outbox.append([[3]], to: "down")
    let blocked = outbox.flush(sockets.send)
    #expect(!blocked, "the upstream socket is full")
    #expect(
      outbox.head == "up" && sockets.sent == ["down 1"],
      "the downstream message behind it does not overtake it")
    sockets.open.insert("up")
    let last = outbox.flush(sockets.send)
    #expect(last && sockets.sent == ["down 1", "up 2", "down 3"] && outbox.head == nil)
  }
}
