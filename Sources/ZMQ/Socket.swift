import CZeroMQ

/// The socket patterns Stagewise uses.
public enum SocketType: Sendable {
  case push, pull, router, dealer

  var raw: Int32 {
    switch self {
    case .push: ZMQ_PUSH
    case .pull: ZMQ_PULL
    case .router: ZMQ_ROUTER
    case .dealer: ZMQ_DEALER
    }
  }
}

/// One libzmq socket, confined to the thread that uses it (libzmq sockets are not
/// thread-safe). Linger is 0 from the start, so closing never blocks on unsent messages.
public final class Socket {
  let handle: UnsafeMutableRawPointer
  public let context: Context
  public let type: SocketType

  public init(_ context: Context, _ type: SocketType) throws(ZMQError) {
    guard let handle = zmq_socket(context.handle, type.raw) else { throw ZMQError.last("socket") }
    self.handle = handle
    self.context = context
    self.type = type
    try setOption(ZMQ_LINGER, Int32(0))
  }

  deinit { zmq_close(handle) }

  // MARK: Options

  public func setOption(_ option: Int32, _ value: Int32) throws(ZMQError) {
    var v = value
    guard zmq_setsockopt(handle, option, &v, MemoryLayout<Int32>.size) == 0 else {
      throw ZMQError.last("setsockopt(\(option))")
    }
  }

  public func setOption(_ option: Int32, _ value: Int64) throws(ZMQError) {
    var v = value
    guard zmq_setsockopt(handle, option, &v, MemoryLayout<Int64>.size) == 0 else {
      throw ZMQError.last("setsockopt(\(option))")
    }
  }

  /// Most messages queued for sending (receiving) before send blocks (messages drop, for
  /// patterns that drop): the bound on batches in flight.
  public func setHighWaterMarks(send: Int32, receive: Int32) throws(ZMQError) {
    try setOption(ZMQ_SNDHWM, send)
    try setOption(ZMQ_RCVHWM, receive)
  }

  /// The largest message a peer can make this socket accept (and so allocate).
  public func setMaximumMessageSize(_ bytes: Int64) throws(ZMQError) {
    try setOption(ZMQ_MAXMSGSIZE, bytes)
  }

  /// How long receive (send) waits before failing with EAGAIN; -1 waits forever.
  public func setTimeouts(receiveMilliseconds: Int32, sendMilliseconds: Int32) throws(ZMQError) {
    try setOption(ZMQ_RCVTIMEO, receiveMilliseconds)
    try setOption(ZMQ_SNDTIMEO, sendMilliseconds)
  }

  /// How long closing waits to deliver unsent messages (0 from the start; raise it before a
  /// last message that must get out).
  public func setLinger(milliseconds: Int32) throws(ZMQError) {
    try setOption(ZMQ_LINGER, milliseconds)
  }

  // MARK: Endpoints

  public func bind(_ endpoint: String) throws(ZMQError) {
    guard zmq_bind(handle, endpoint) == 0 else { throw ZMQError.last("bind \(endpoint)") }
  }

  public func connect(_ endpoint: String) throws(ZMQError) {
    guard zmq_connect(handle, endpoint) == 0 else { throw ZMQError.last("connect \(endpoint)") }
  }

  /// The endpoint last bound, with the port the system chose for `tcp://HOST:*`.
  public var lastEndpoint: String {
    var buffer = [CChar](repeating: 0, count: 256)
    var size = buffer.count
    guard zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buffer, &size) == 0 else { return "" }
    return String(
      decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }

  /// The port of the endpoint last bound (`tcp://HOST:PORT`), for advertising under another host.
  public var boundPort: String { lastEndpoint.split(separator: ":").last.map(String.init) ?? "" }

  // MARK: Messages

  /// Sends one multipart message; each frame is copied into libzmq's buffers.
  public func send(_ frames: [[UInt8]]) throws(ZMQError) {
    for (i, frame) in frames.enumerated() {
      let flags = i < frames.count - 1 ? ZMQ_SNDMORE : 0
      while true {
        let rc = frame.withUnsafeBytes { zmq_send(handle, $0.baseAddress, $0.count, flags) }
        if rc >= 0 { break }
        if zmq_errno() == EINTR { continue }
        throw ZMQError.last("send")
      }
    }
  }

  /// Receives one whole multipart message (waits at most the receive timeout).
  public func receive() throws(ZMQError) -> [[UInt8]] {
    var frames: [[UInt8]] = []
    var message = zmq_msg_t()
    zmq_msg_init(&message)
    defer { zmq_msg_close(&message) }
    repeat {
      while zmq_msg_recv(&message, handle, 0) < 0 {
        if zmq_errno() == EINTR { continue }
        throw ZMQError.last("receive")
      }
      let size = zmq_msg_size(&message)
      let data = zmq_msg_data(&message)
      frames.append(size == 0 ? [] : Array(UnsafeRawBufferPointer(start: data, count: size)))
    } while zmq_msg_more(&message) == 1
    return frames
  }

  /// Sends one multipart message if the socket can take it now; false when it cannot (its
  /// peer's queue is full, or no peer is connected yet), and nothing was sent.
  public func trySend(_ frames: [[UInt8]]) throws(ZMQError) -> Bool {
    for (i, frame) in frames.enumerated() {
      let flags = (i < frames.count - 1 ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT
      while true {
        let rc = frame.withUnsafeBytes { zmq_send(handle, $0.baseAddress, $0.count, flags) }
        if rc >= 0 { break }
        if zmq_errno() == EINTR { continue }
        // Once the first frame is queued the rest of the message always is (it is atomic).
        if zmq_errno() == EAGAIN && i == 0 { return false }
        throw ZMQError.last("send")
      }
    }
    return true
  }

  /// Receives one whole multipart message if one is waiting, else nil.
  public func tryReceive() throws(ZMQError) -> [[UInt8]]? {
    var frames: [[UInt8]] = []
    var message = zmq_msg_t()
    zmq_msg_init(&message)
    defer { zmq_msg_close(&message) }
    repeat {
      while zmq_msg_recv(&message, handle, frames.isEmpty ? ZMQ_DONTWAIT : 0) < 0 {
        if zmq_errno() == EINTR { continue }
        if zmq_errno() == EAGAIN && frames.isEmpty { return nil }
        throw ZMQError.last("receive")
      }
      let size = zmq_msg_size(&message)
      let data = zmq_msg_data(&message)
      frames.append(size == 0 ? [] : Array(UnsafeRawBufferPointer(start: data, count: size)))
    } while zmq_msg_more(&message) == 1
    return frames
  }

  /// What a poll waits for on a socket.
  public enum Readiness: Sendable { case readable, writable }

  /// Waits up to `timeoutMilliseconds` until any of `items` is ready as asked; returns the
  /// indices of those that are.
  public static func poll(_ items: [(Socket, Readiness)], timeoutMilliseconds: Int) throws(ZMQError)
    -> [Int]
  {
    let event = { (readiness: Readiness) in Int16(readiness == .readable ? ZMQ_POLLIN : ZMQ_POLLOUT)
    }
    var raw = items.map {
      zmq_pollitem_t(socket: $0.0.handle, fd: 0, events: event($0.1), revents: 0)
    }
    while zmq_poll(&raw, Int32(raw.count), timeoutMilliseconds) < 0 {
      if zmq_errno() == EINTR { continue }
      throw ZMQError.last("poll")
    }
    return raw.indices.filter { raw[$0].revents & raw[$0].events != 0 }
  }

  /// Waits up to `timeoutMilliseconds` for any of `sockets` to be readable; returns their
  /// indices.
  public static func pollReadable(_ sockets: [Socket], timeoutMilliseconds: Int) throws(ZMQError)
    -> [Int]
  {
    try poll(sockets.map { ($0, .readable) }, timeoutMilliseconds: timeoutMilliseconds)
  }
}
