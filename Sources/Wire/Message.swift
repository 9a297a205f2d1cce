/// One tensor as it travels: role, element type, shape and raw little-endian bytes.
public struct WireTensor: Equatable, Sendable {
  public var role: Role
  public var dtype: DType
  public var shape: [Int]
  public var bytes: [UInt8]

  public init(role: Role, dtype: DType, shape: [Int], bytes: [UInt8]) {
    (self.role, self.dtype, self.shape, self.bytes) = (role, dtype, shape, bytes)
  }

  public init(role: Role, shape: [Int], floats: [Float]) {
    precondition(shape.reduce(1, *) == floats.count, "WireTensor: shape and values disagree")
    self.init(role: role, dtype: .f32, shape: shape, bytes: floats.withUnsafeBytes { Array($0) })
  }

  public init(role: Role, labels: [Int32]) {
    self.init(
      role: role, dtype: .i32, shape: [labels.count], bytes: labels.withUnsafeBytes { Array($0) })
  }

  public var elementCount: Int { shape.reduce(1, *) }

  /// The values as Float (the dtype must be f32; checked by `expect`).
  public var floats: [Float] {
    [Float](unsafeUninitializedCapacity: bytes.count / 4) { buffer, count in
      bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(buffer).copyMemory(from: $0) }
      count = bytes.count / 4
    }
  }

  public var int32s: [Int32] {
    [Int32](unsafeUninitializedCapacity: bytes.count / 4) { buffer, count in
      bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(buffer).copyMemory(from: $0) }
      count = bytes.count / 4
    }
  }
}

/// A Stagewise message: a fixed header (frame 0) and one raw frame per tensor.
public struct Message: Equatable, Sendable {
  public var kind: Kind
  public var flags: UInt8 = 0
  public var job: UInt32 = 0
  public var stage: UInt16 = 0
  public var epoch: UInt32 = 0
  public var step: UInt64 = 0
  public var sequence: UInt64 = 0
  /// The sending stage's replica (0 when it has one).
  public var replica: UInt16 = 0
  /// GPipe: this message's micro-batch and how many make up its batch (0 when not split).
  public var microIndex: UInt16 = 0
  public var microCount: UInt16 = 0
  public var tensors: [WireTensor] = []
  /// The header's version: `Protocol.version` unless a test forges another.
  public var version: UInt16 = Protocol.version

  public init(kind: Kind, tensors: [WireTensor] = []) {
    self.kind = kind
    self.tensors = tensors
  }

  /// The first tensor with `role`, if any.
  public func tensor(_ role: Role) -> WireTensor? { tensors.first { $0.role == role } }
}
