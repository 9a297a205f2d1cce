import Synchronization
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

  /// A CURVE server whose ZAP handler allows one key: that client's messages arrive; an
  /// unknown key and a plaintext client get nothing through, and the unknown key is reported.
  @Test func curveLetsOnlyAllowedKeysTalk() throws {
    let context = try Context()
    let server = try CurveKeyPair.generate(), friend = try CurveKeyPair.generate(), stranger = try CurveKeyPair.generate()
    #expect(CurveKeyPair(secretKey: server.secretKey) == server)
    #expect(CurveKeyPair(secretKey: "not a key") == nil)
    let refused = Mutex<[String]>([])
    let zap = try ZAPHandler(context: context, allowed: [friend.publicKey]) { key, _ in refused.withLock { $0.append(key) } }
    defer { zap.stop() }
    let pull = try Socket(context, .pull)
    try pull.secure(.server(server))
    try pull.bind("tcp://127.0.0.1:*")
    func client(_ keys: CurveKeyPair?) throws -> Socket {
      let push = try Socket(try Context(), .push)
      if let keys { try push.secure(.client(keys, serverKey: server.publicKey)) }
      try push.connect(pull.lastEndpoint)
      return push
    }
    let plaintext = try client(nil), unknown = try client(stranger), allowed = try client(friend)
    try plaintext.send([Array("plaintext".utf8)])
    try unknown.send([Array("stranger".utf8)])
    try allowed.send([Array("friend".utf8)])
    try pull.setTimeouts(receiveMilliseconds: 5000, sendMilliseconds: 0)
    #expect(try pull.receive() == [Array("friend".utf8)])
    try pull.setTimeouts(receiveMilliseconds: 1000, sendMilliseconds: 0)
    #expect(throws: ZMQError.self) { try pull.receive() }  // nothing else ever arrives
    #expect(refused.withLock { $0.contains(stranger.publicKey) } && zap.refusedCount >= 1)
  }

  /// Before its allow-list is known (a worker before its assignment), the handler keeps the
  /// handshake waiting instead of refusing it.
  @Test func zapRequestsWaitForTheAllowList() throws {
    let context = try Context()
    let server = try CurveKeyPair.generate(), friend = try CurveKeyPair.generate()
    let zap = try ZAPHandler(context: context, allowed: nil) { _, _ in }
    defer { zap.stop() }
    let pull = try Socket(context, .pull)
    try pull.secure(.server(server))
    try pull.bind("tcp://127.0.0.1:*")
    let push = try Socket(try Context(), .push)
    try push.secure(.client(friend, serverKey: server.publicKey))
    try push.connect(pull.lastEndpoint)
    try push.send([[42]])
    #expect(try Socket.pollReadable([pull], timeoutMilliseconds: 500).isEmpty)
    zap.allow([friend.publicKey])
    try pull.setTimeouts(receiveMilliseconds: 5000, sendMilliseconds: 0)
    #expect(try pull.receive() == [[42]])
    #expect(zap.refusedCount == 0)
  }
}
