import CZeroMQ

/// A failed libzmq call: the operation, the errno and libzmq's text for it.
public struct ZMQError: Error, CustomStringConvertible, Sendable, Equatable {
  public var operation: String
  public var errno: Int32

  public var description: String {
    "zmq \(operation) failed: \(String(cString: zmq_strerror(errno))) (errno \(errno))"
  }

  /// The call would have blocked or timed out.
  public var isTimeout: Bool { errno == EAGAIN }

  static func last(_ operation: String) -> ZMQError {
    ZMQError(operation: operation, errno: zmq_errno())
  }
}
