import CZeroMQ

/// A libzmq context: owns the I/O threads. Thread-safe, as libzmq's contexts are.
public final class Context: @unchecked Sendable {
  // @unchecked: zmq contexts are documented thread-safe; the pointer is never reassigned.
  let handle: UnsafeMutableRawPointer

  public init(ioThreads: Int = 1) throws(ZMQError) {
    guard let handle = zmq_ctx_new() else { throw ZMQError.last("ctx_new") }
    zmq_ctx_set(handle, ZMQ_IO_THREADS, Int32(ioThreads))
    self.handle = handle
  }

  deinit {
    // Sockets close with linger 0, so terminating cannot hang.
    while zmq_ctx_term(handle) != 0 && zmq_errno() == EINTR {}
  }

  /// libzmq's version, `major.minor.patch`.
  public static var version: String {
    var major: Int32 = 0
    var minor: Int32 = 0
    var patch: Int32 = 0
    zmq_version(&major, &minor, &patch)
    return "\(major).\(minor).\(patch)"
  }

  /// Whether this libzmq has CURVE security (it does when built with libsodium).
  public static var hasCurve: Bool { zmq_has("curve") == 1 }
}
