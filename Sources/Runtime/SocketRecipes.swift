import ZMQ

/// How Stagewise sets up the sockets that scheduler and workers both make.
enum SocketRecipes {
  /// A PUSH socket into a stage's data or gradient socket: a CURVE client when `curve` is given
  /// (this side's keys and the peer's public key), the config's small high-water marks (they
  /// bound what is in flight), sends that time out after `sendTimeoutMilliseconds` (the
  /// caller decides what to do meanwhile).
  static func push(
    _ context: Context, to endpoint: String, curve: (keys: CurveKeyPair, serverKey: String)?,
    highWaterMark: Int,
    sendTimeoutMilliseconds: Int32
  ) throws -> Socket {
    let socket = try Socket(context, .push)
    if let curve { try socket.secure(.client(curve.keys, serverKey: curve.serverKey)) }
    try socket.setHighWaterMarks(send: Int32(highWaterMark), receive: Int32(highWaterMark))
    try socket.setTimeouts(
      receiveMilliseconds: sendTimeoutMilliseconds, sendMilliseconds: sendTimeoutMilliseconds)
    try socket.connect(endpoint)
    return socket
  }

  /// Makes `sockets` CURVE servers whose clients the returned ZAP handler checks against
  /// `allowed` (nil: none yet, `allow` later); refused keys are logged with `who` saying who may
  /// connect.
  static func secureServers(
    _ sockets: [Socket], keys: CurveKeyPair, context: Context, allowed: Set<String>?, who: String,
    log: @escaping @Sendable (String) -> Void
  ) throws -> ZAPHandler {
    let zap = try ZAPHandler(context: context, allowed: allowed) { key, address in
      log("refused a peer at \(address): key \(key) is not \(who)")
    }
    for socket in sockets { try socket.secure(.server(keys)) }
    return zap
  }
}
