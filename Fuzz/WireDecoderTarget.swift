// libFuzzer target for the wire decoder, built by scripts/fuzz.sh together with Sources/Wire
// (swiftc -sanitize=fuzzer,address). The fuzzer's bytes become frames: the first byte says how
// many (1…9), then a 16-bit little-endian length for each frame but the last, which takes the
// rest. Properties: decoding never traps; what decodes re-encodes to a message that decodes to
// the same value, with every tensor's bytes matching its shape; every refusal has a reason.
import Foundation

/// The fuzzer's input as frames (see above).
func frames(_ input: [UInt8]) -> [[UInt8]] {
  guard let first = input.first else { return [] }
  let count = 1 + Int(first) % 9
  var offset = 1
  var frames: [[UInt8]] = []
  for _ in 0..<(count - 1) {
    guard offset + 2 <= input.count else { break }
    let length = min(Int(input[offset]) | Int(input[offset + 1]) << 8, input.count - offset - 2)
    frames.append(Array(input[(offset + 2)..<(offset + 2 + length)]))
    offset += 2 + length
  }
  frames.append(Array(input[min(offset, input.count)...]))
  return frames
}

/// The inverse of `frames(_:)`: how the seed corpus is written.
func input(_ frames: [[UInt8]]) -> [UInt8] {
  var bytes = [UInt8(frames.count - 1)]
  for frame in frames.dropLast() { bytes += [UInt8(frame.count & 0xFF), UInt8(frame.count >> 8)] + frame }
  return bytes + frames.last!
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  let input = frames(Array(UnsafeBufferPointer(start: data, count: size)))
  do {
    let message = try Message(frames: input)
    for tensor in message.tensors {
      precondition(tensor.bytes.count == tensor.dtype.byteCount(shape: tensor.shape, elements: tensor.elementCount), "a tensor's bytes disagree with its shape")
      if let batch = tensor.shape.first, batch >= 1 {
        _ = try? message.expect(tensor.role, tensor.dtype, sampleShape: Array(tensor.shape.dropFirst()), batch: batch)
      }
      if tensor.dtype == .f32 || tensor.dtype == .i32 { precondition(tensor.floats.count == tensor.elementCount && tensor.int32s.count == tensor.elementCount) }
    }
    _ = try? message.body([String: Double].self)
    let again = try Message(frames: message.encode())
    precondition(again == message, "decode ∘ encode is not the identity")
  } catch {
    precondition(!error.reason.isEmpty && !error.description.isEmpty, "a refusal without a reason")
  }
  return 0
}

/// With STAGEWISE_FUZZ_SEEDS=DIR, writes well-formed messages of every kind there first.
@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
  guard let directory = ProcessInfo.processInfo.environment["STAGEWISE_FUZZ_SEEDS"] else { return 0 }
  let activations = WireTensor(role: .activations, shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
  let labels = WireTensor(role: .labels, labels: [1, 9])
  var seeds = [Message(kind: .train, tensors: [activations, labels]), Message(kind: .marker)]
  seeds.append(Message(kind: .grad, tensors: [WireTensor(role: .gradient, shape: [1, 1, 2, 2], floats: [0, 1, 2, 3])]))
  seeds.append(Message(kind: .feedback, tensors: [WireTensor(role: .error, shape: [2, 3], floats: [0.1, -0.2, 0.1, 0, 0.5, -0.5])]))
  seeds.append(Message(kind: .eval, tensors: [activations, labels, WireTensor(role: .context, dtype: .u8, shape: [2, 2], bytes: [0, 255, 7, 8])]))
  seeds.append(Message(kind: .stats, body: ["loss": 0.5, "rejected": 2]))
  seeds.append(Message(kind: .train, tensors: Array(repeating: WireTensor(role: .skip, shape: [0], floats: []), count: Protocol.maxTensors)))
  try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
  for (i, seed) in seeds.enumerated() {
    _ = FileManager.default.createFile(atPath: "\(directory)/seed-\(i)", contents: Data(input(seed.encode())))
  }
  return 0
}
