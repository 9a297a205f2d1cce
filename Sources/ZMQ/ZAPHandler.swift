import Foundation
import Synchronization

/// ZeroMQ's authentication hook (ZAP, RFC 27) for one context: every CURVE server socket in
/// the context asks it about each client's public key before the handshake completes. Keys
/// on the allow-list are accepted, others refused and reported. Until an allow-list is set
/// (a worker learns its from its assignment) requests wait unanswered — the handshake simply
/// takes longer — rather than being refused.
///
/// It serves its socket on a thread of its own, so that no I/O loop has to poll it.
public final class ZAPHandler: Sendable {
  struct State {
    var allowed: Set<String>?
    var refused = 0
  }

  /// The libzmq socket, created on the caller's thread and used only by the handler's thread
  /// after that (libzmq allows handing a socket to another thread with a memory barrier,
  /// which starting the thread is).
  final class Box: @unchecked Sendable {
    var socket: Socket?
    init(_ socket: Socket) { self.socket = socket }
  }

  let state: Mutex<State>
  let running = Atomic<Bool>(true)
  let finished = DispatchSemaphore(value: 0)

  /// Binds the handler's socket in `context` and starts serving. `onRefused(key, address)`
  /// is called (on the handler's thread) for each client refused.
  public init(
    context: Context, allowed: Set<String>?, onRefused: @escaping @Sendable (String, String) -> Void
  ) throws(ZMQError) {
    state = Mutex(State(allowed: allowed))
    let socket = try Socket(context, .router)
    try socket.bind("inproc://zeromq.zap.01")
    let box = Box(socket)
    let thread = Thread { [self] in
      serve(box.socket!, onRefused: onRefused)
      box.socket = nil  // closed here, before `stop` returns: the context can end
      finished.signal()
    }
    thread.name = "zap"
    thread.start()
  }

  /// Sets (replaces) the allow-list; waiting requests are answered with it.
  public func allow(_ keys: Set<String>) { state.withLock { $0.allowed = keys } }

  /// Forgets the allow-list: requests wait again until the next `allow`. A worker that drops
  /// its stage holds here, so that a new neighbour that connects before this worker has its
  /// next assignment waits rather than being refused by the last one (libzmq does not retry
  /// a connection its server refused).
  public func hold() { state.withLock { $0.allowed = nil } }

  /// Clients refused so far.
  public var refusedCount: Int { state.withLock { $0.refused } }

  /// Stops serving and waits for the thread to close its socket (before the context ends).
  public func stop() {
    guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
    finished.wait()
  }

  func serve(_ socket: Socket, onRefused: @Sendable (String, String) -> Void) {
    var waiting: [[[UInt8]]] = []
    while running.load(ordering: .acquiring) {
      guard let ready = try? Socket.pollReadable([socket], timeoutMilliseconds: 50) else { break }
      if !ready.isEmpty, let request = try? socket.receive() { waiting.append(request) }
      guard !waiting.isEmpty, let allowed = state.withLock({ $0.allowed }) else { continue }
      for request in waiting {
        guard let reply = answer(request, allowed: allowed, onRefused: onRefused) else { continue }
        try? socket.send(reply)
      }
      waiting = []
    }
  }

  /// The reply to one request: [peer, "", version, request id, domain, address, identity,
  /// mechanism, credentials…] → [peer, "", "1.0", request id, status, text, user id, metadata].
  func answer(
    _ request: [[UInt8]], allowed: Set<String>, onRefused: @Sendable (String, String) -> Void
  ) -> [[UInt8]]? {
    guard request.count >= 8, String(decoding: request[2], as: UTF8.self) == "1.0" else {
      return nil
    }
    let address = String(decoding: request[5], as: UTF8.self)
    let mechanism = String(decoding: request[7], as: UTF8.self)
    let key = mechanism == "CURVE" && request.count >= 9 ? CurveKeyPair.z85(request[8]) : nil
    let accepted = key.map { allowed.contains($0) } ?? false
    if !accepted {
      state.withLock { $0.refused += 1 }
      onRefused(key ?? "(\(mechanism), no key)", address)
    }
    let status = accepted ? "200" : "400"
    let text = accepted ? "OK" : "key not allowed"
    return [
      request[0], [], Array("1.0".utf8), request[3], Array(status.utf8), Array(text.utf8),
      Array((key ?? "").utf8), [],
    ]
  }
}
