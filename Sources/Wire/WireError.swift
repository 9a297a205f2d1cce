/// Why a message was rejected. Each case names one specific, countable reason.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
  case noFrames
  case headerTooShort(bytes: Int)
  case badMagic(UInt32)
  case versionMismatch(peer: UInt16)
  case unknownKind(UInt8)
  case tooManyTensors(Int)
  case frameCountMismatch(declared: Int, frames: Int)
  case unknownRole(UInt8)
  case unknownDType(UInt8)
  case badRank(Int)
  case tooLarge(elements: Int)
  case sizeMismatch(tensor: Int, expectedBytes: Int, gotBytes: Int)
  case outOfOrder(expected: UInt64, got: UInt64)
  /// For a job that is not the receiver's (and not one a recovery retired).
  case wrongJob(UInt32, expected: UInt32)
  /// From a job a recovery retired: still in flight when the stage was reset.
  case staleJob(UInt32)
  case unexpected(String)

  public var description: String {
    switch self {
    case .noFrames: "empty message"
    case .headerTooShort(let n): "header frame of \(n) bytes is too short"
    case .badMagic(let m): "bad magic 0x\(String(m, radix: 16)) (not a Stagewise message)"
    case .versionMismatch(let v):
      "protocol version \(v), this build speaks \(Protocol.version): run the same stagewise build "
        + "everywhere"
    case .unknownKind(let k): "unknown message kind \(k)"
    case .tooManyTensors(let n): "\(n) tensors declared, at most \(Protocol.maxTensors)"
    case .frameCountMismatch(let d, let f):
      "header declares \(d) tensors but \(f) data frames follow"
    case .unknownRole(let r): "unknown tensor role \(r)"
    case .unknownDType(let d): "unknown dtype \(d)"
    case .badRank(let r): "tensor rank \(r) outside 0…\(Protocol.maxRank)"
    case .tooLarge(let e): "tensor of \(e) elements exceeds the limit of \(Protocol.maxElements)"
    case .sizeMismatch(let t, let e, let g):
      "tensor \(t): descriptor says \(e) bytes, frame has \(g)"
    case .outOfOrder(let e, let g): "sequence \(g) out of order, expected \(e)"
    case .wrongJob(let job, let expected): "message for job \(job), this is job \(expected)"
    case .staleJob(let job): "message for job \(job), which a recovery retired"
    case .unexpected(let why): why
    }
  }

  /// A short stable name for counting rejections by reason.
  public var reason: String {
    switch self {
    case .noFrames: "no-frames"
    case .headerTooShort: "short-header"
    case .badMagic: "bad-magic"
    case .versionMismatch: "version"
    case .unknownKind: "unknown-kind"
    case .tooManyTensors: "too-many-tensors"
    case .frameCountMismatch: "frame-count"
    case .unknownRole: "unknown-role"
    case .unknownDType: "unknown-dtype"
    case .badRank: "bad-rank"
    case .tooLarge: "too-large"
    case .sizeMismatch: "size-mismatch"
    case .outOfOrder: "out-of-order"
    case .wrongJob: "wrong-job"
    case .staleJob: "stale-job"
    case .unexpected: "unexpected"
    }
  }
}
