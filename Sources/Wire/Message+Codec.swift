extension Message {
  /// The frames to send: header first, then each tensor's bytes.
  public func encode() -> [[UInt8]] {
    var header = [UInt8]()
    header.reserveCapacity(Protocol.headerSize + tensors.count * Protocol.descriptorSize)
    header.appendLE(Protocol.magic)
    header.appendLE(version)
    header.append(kind.rawValue)
    header.append(flags)
    header.appendLE(job)
    header.appendLE(stage)
    header.appendLE(UInt16(tensors.count))
    header.appendLE(epoch)
    header.appendLE(microIndex)
    header.appendLE(microCount)
    header.appendLE(step)
    header.appendLE(sequence)
    header.appendLE(replica)
    header.appendLE(UInt16(0))  // reserved
    for tensor in tensors {
      precondition(
        tensor.shape.count <= Protocol.maxRank, "Message: rank above \(Protocol.maxRank)")
      header += [tensor.role.rawValue, tensor.dtype.rawValue, UInt8(tensor.shape.count), 0]
      for d in 0..<Protocol.maxRank {
        header.appendLE(UInt32(d < tensor.shape.count ? tensor.shape[d] : 0))
      }
    }
    return [header] + tensors.map(\.bytes)
  }

  /// Decodes and validates frames; any inconsistency is a `WireError` naming it.
  public init(frames: [[UInt8]]) throws(WireError) {
    guard let header = frames.first else { throw .noFrames }
    guard header.count >= Protocol.headerSize else { throw .headerTooShort(bytes: header.count) }
    var reader = LittleEndianReader(header)
    let magic: UInt32 = reader.read()
    guard magic == Protocol.magic else { throw .badMagic(magic) }
    let version: UInt16 = reader.read()
    guard version == Protocol.version else { throw .versionMismatch(peer: version) }
    let rawKind: UInt8 = reader.read()
    guard let kind = Kind(rawValue: rawKind) else { throw .unknownKind(rawKind) }
    self.init(kind: kind)
    flags = reader.read()
    job = reader.read()
    stage = reader.read()
    let count = Int(reader.read() as UInt16)
    epoch = reader.read()
    microIndex = reader.read()
    microCount = reader.read()
    step = reader.read()
    sequence = reader.read()
    replica = reader.read()
    let _: UInt16 = reader.read()  // reserved
    guard count <= Protocol.maxTensors else { throw .tooManyTensors(count) }
    guard header.count == Protocol.headerSize + count * Protocol.descriptorSize else {
      throw .headerTooShort(bytes: header.count)
    }
    guard frames.count == count + 1 else {
      throw .frameCountMismatch(declared: count, frames: frames.count - 1)
    }
    for t in 0..<count {
      let rawRole: UInt8 = reader.read()
      let rawType: UInt8 = reader.read()
      let rank = Int(reader.read() as UInt8)
      let _: UInt8 = reader.read()
      var dims: [Int] = []
      for _ in 0..<Protocol.maxRank { dims.append(Int(reader.read() as UInt32)) }
      guard let role = Role(rawValue: rawRole) else { throw .unknownRole(rawRole) }
      guard let dtype = DType(rawValue: rawType) else { throw .unknownDType(rawType) }
      guard rank <= Protocol.maxRank else { throw .badRank(rank) }
      let shape = Array(dims.prefix(rank))
      // Multiply with overflow checks: a forged header must not wrap around the limit.
      var elements = 1
      for d in shape {
        let (product, overflow) = elements.multipliedReportingOverflow(by: d)
        guard !overflow, product <= Protocol.maxElements else {
          throw .tooLarge(elements: overflow ? Int.max : product)
        }
        elements = product
      }
      let expected = dtype.byteCount(shape: shape, elements: elements)
      guard frames[t + 1].count == expected else {
        throw .sizeMismatch(tensor: t, expectedBytes: expected, gotBytes: frames[t + 1].count)
      }
      tensors.append(WireTensor(role: role, dtype: dtype, shape: shape, bytes: frames[t + 1]))
    }
    self.version = version
  }

  /// The tensor with `role`, checked against what the receiver expects: dtype and, per
  /// sample, shape (`nil` accepts any batch size; `batch` pins it).
  public func expect(_ role: Role, _ dtype: DType, sampleShape: [Int], batch: Int? = nil)
    throws(WireError) -> WireTensor
  {
    guard let tensor = tensor(role) else { throw .unexpected("\(kind) without its \(role) tensor") }
    guard tensor.dtype == dtype else {
      throw .unexpected("\(role) tensor has dtype \(tensor.dtype), expected \(dtype)")
    }
    guard tensor.shape.count == sampleShape.count + 1,
      Array(tensor.shape.dropFirst()) == sampleShape,
      tensor.shape[0] >= 1, batch.map({ tensor.shape[0] == $0 }) ?? true
    else {
      let wanted = "[\(batch.map(String.init) ?? "B")\(sampleShape.map { ", \($0)" }.joined())]"
      throw .unexpected("\(role) tensor has shape \(tensor.shape), expected \(wanted)")
    }
    return tensor
  }
}

extension [UInt8] {
  mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
    Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
  }
}

/// Reads little-endian integers from a byte array; the caller checks the length first.
struct LittleEndianReader {
  let bytes: [UInt8]
  var offset = 0
  init(_ bytes: [UInt8]) { self.bytes = bytes }

  mutating func read<T: FixedWidthInteger>() -> T {
    var value: T = 0
    for i in 0..<MemoryLayout<T>.size { value |= T(bytes[offset + i]) << (8 * i) }
    offset += MemoryLayout<T>.size
    return value
  }
}
