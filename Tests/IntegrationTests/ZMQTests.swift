import CZeroMQ
import Testing

@testable import ZMQ

@Suite("ZeroMQ wrapper on loopback")
struct ZMQTests {
  @Test func pushPullCarriesMultipartMessages() throws {
    let context = try Context()
    let pull = try Socket(context, .pull)
    try pull.bind("tcp://127.0.0.1:*")
    let endpoint = pull.lastEndpoint
    #expect(endpoint.hasPrefix("tcp://127.0.0.1:") && !endpoint.hasSuffix(":*"))
    try pull.setTimeouts(receiveMilliseconds: 5000, sendMilliseconds: 5000)
    let push = try Socket(context, .push)
    try push.connect(endpoint)
    let big = [UInt8]((0..<100_000).map { UInt8($0 % 251) })
    try push.send([[1, 2, 3], [], big])
    let frames = try pull.receive()
    #expect(frames == [[1, 2, 3], [], big])
  }

  @Test func receiveTimesOutInsteadOfHanging() throws {
    let context = try Context()
    let pull = try Socket(context, .pull)
    try pull.bind("tcp://127.0.0.1:*")
    try pull.setTimeouts(receiveMilliseconds: 50, sendMilliseconds: 50)
    let error = #expect(throws: ZMQError.self) { try pull.receive() }
    #expect(error?.isTimeout == true)
    #expect(try Socket.pollReadable([pull], timeoutMilliseconds: 20).isEmpty)
  }

  @Test func oversizedMessagesAreRefused() throws {
    let context = try Context()
    let pull = try Socket(context, .pull)
    try pull.setMaximumMessageSize(1024)
    try pull.bind("tcp://127.0.0.1:*")
    try pull.setTimeouts(receiveMilliseconds: 300, sendMilliseconds: 300)
    let push = try Socket(context, .push)
    try push.connect(pull.lastEndpoint)
    try push.send([[UInt8](repeating: 7, count: 4096)])
    #expect(throws: ZMQError.self) { try pull.receive() }
  }

  @Test func badEndpointKeepsTheErrno() {
    let error = #expect(throws: ZMQError.self) {
      let socket = try Socket(try Context(), .push)
      try socket.bind("tcp://no-such-host-name.invalid:1")
    }
    #expect(error?.description.contains("bind tcp://no-such-host-name.invalid:1") == true)
  }

  @Test func curveIsAvailable() {
    #expect(Context.hasCurve)
    #expect(Context.version.hasPrefix("4."))
  }
}
