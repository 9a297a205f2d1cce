import CZeroMQ

/// A CURVE key pair in Z85 text (40 characters each), as libzmq makes and takes them.
public struct CurveKeyPair: Sendable, Equatable {
  public var publicKey: String
  public var secretKey: String

  public init(publicKey: String, secretKey: String) {
    (self.publicKey, self.secretKey) = (publicKey, secretKey)
  }

  /// A fresh key pair from libzmq's (libsodium's) generator.
  public static func generate() throws(ZMQError) -> CurveKeyPair {
    var publicKey = [CChar](repeating: 0, count: 41)
    var secretKey = [CChar](repeating: 0, count: 41)
    guard zmq_curve_keypair(&publicKey, &secretKey) == 0 else {
      throw ZMQError.last("curve_keypair")
    }
    return CurveKeyPair(publicKey: String(z85: publicKey), secretKey: String(z85: secretKey))
  }

  /// The pair whose secret key is `secretKey` (its public key derived); nil when the text is
  /// not a Z85 key.
  public init?(secretKey: String) {
    guard Self.isKey(secretKey) else { return nil }
    var publicKey = [CChar](repeating: 0, count: 41)
    guard zmq_curve_public(&publicKey, secretKey) == 0 else { return nil }
    self.init(publicKey: String(z85: publicKey), secretKey: secretKey)
  }

  /// Whether `text` is a 40-character Z85 key.
  public static func isKey(_ text: String) -> Bool {
    guard text.utf8.count == 40 else { return false }
    var bytes = [UInt8](repeating: 0, count: 32)
    return zmq_z85_decode(&bytes, text) != nil
  }

  /// A 32-byte key (as ZAP hands them over) in Z85 text.
  public static func z85(_ key: [UInt8]) -> String? {
    guard key.count == 32 else { return nil }
    var text = [CChar](repeating: 0, count: 41)
    guard zmq_z85_encode(&text, key, 32) != nil else { return nil }
    return String(z85: text)
  }
}

extension String {
  init(z85 buffer: [CChar]) {
    self = String(
      decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }
}

/// Which end of a CURVE connection a socket is: the server holds its secret key, a client
/// also needs the server's public key.
public enum CurveRole: Sendable {
  case server(CurveKeyPair)
  case client(CurveKeyPair, serverKey: String)
}

extension Socket {
  /// Makes this socket a CURVE server or client. Must come before bind or connect; a server
  /// then has every client's key checked by the context's ZAP handler.
  public func secure(_ role: CurveRole) throws(ZMQError) {
    switch role {
    case .server(let keys):
      try setOption(ZMQ_CURVE_SERVER, Int32(1))
      try setOption(ZMQ_CURVE_SECRETKEY, text: keys.secretKey)
      try setOption(ZMQ_ZAP_DOMAIN, text: "stagewise")
    case .client(let keys, let serverKey):
      try setOption(ZMQ_CURVE_SERVERKEY, text: serverKey)
      try setOption(ZMQ_CURVE_PUBLICKEY, text: keys.publicKey)
      try setOption(ZMQ_CURVE_SECRETKEY, text: keys.secretKey)
    }
  }

  public func setOption(_ option: Int32, text: String) throws(ZMQError) {
    let bytes = Array(text.utf8)
    guard bytes.withUnsafeBytes({ zmq_setsockopt(handle, option, $0.baseAddress, $0.count) }) == 0
    else {
      throw ZMQError.last("setsockopt(\(option))")
    }
  }
}
