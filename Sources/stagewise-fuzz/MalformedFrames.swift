import NN
import Wire

/// An endless, seeded stream of messages a stage must reject: mutants of well-formed TRAIN,
/// EVAL, MARKER, GRAD and FEEDBACK messages (bytes overwritten, header fields set to edge values,
/// frames
/// cut, grown, dropped or repeated, random bytes) and well-formed messages that are wrong for a
/// stage (labels out of range, a bad micro-batch share, the wrong shape, kind or job).
///
/// None of them can be accepted: one that still decodes and names the run's job gets sequence
/// number 0, which every stage consumed before the fuzzing starts (so its data socket answers
/// out-of-order and its gradient socket holds nothing for it).
struct MalformedFrames {
  /// The run's job, the stage's input and output width, and the number of classes.
  let job: UInt32
  let width: Int
  let classes: Int
  var rng: SeededGenerator
  private let seeds: [Message]

  init(job: UInt32, width: Int, classes: Int, seed: UInt64) {
    (self.job, self.width, self.classes) = (job, width, classes)
    rng = SeededGenerator(seed: seed)
    let batch = 4
    let activations = WireTensor(
      role: .activations, shape: [batch, width],
      floats: [Float](repeating: 0.5, count: batch * width))
    let labels = WireTensor(role: .labels, labels: (0..<Int32(batch)).map { $0 % Int32(classes) })
    var train = Message(kind: .train, tensors: [activations, labels])
    train.job = job
    var eval = train
    eval.kind = .eval
    var marker = Message(kind: .marker)
    (marker.job, marker.flags) = (job, MarkerFlag.trainEnd.rawValue)
    var micro = train
    (micro.microIndex, micro.microCount) = (1, 2)
    micro.tensors.append(WireTensor(role: .share, shape: [1], floats: [0.5]))
    var grad = Message(
      kind: .grad,
      tensors: [
        WireTensor(
          role: .gradient, shape: [batch, width],
          floats: [Float](repeating: 0.01, count: batch * width))
      ])
    grad.job = job
    var feedback = Message(
      kind: .feedback,
      tensors: [
        WireTensor(
          role: .error, shape: [batch, classes],
          floats: [Float](repeating: 0.01, count: batch * classes))
      ])
    feedback.job = job
    seeds = [train, eval, marker, micro, grad, feedback]
  }

  /// The next malformed message, and the reason the decoder alone gives for it (nil when it
  /// decodes, and the stage's own checks must refuse it).
  mutating func next() -> (frames: [[UInt8]], decoderReason: String?) {
    var frames: [[UInt8]]
    switch int(6) {
    case 0: frames = randomFrames()
    case 1: frames = overwrittenBytes()
    case 2: frames = edgeValueField()
    case 3: frames = resizedFrame()
    case 4: frames = rearrangedFrames()
    default: frames = wrongForAStage().encode()
    }
    do {
      let message = try Message(frames: frames)
      if message.job == job && message.sequence != 0 {
        frames[0].replaceSubrange(Self.sequenceBytes, with: [UInt8](repeating: 0, count: 8))
      }
      return (frames, nil)
    } catch {
      return (frames, error.reason)
    }
  }

  /// Where the header keeps the sequence number.
  static let sequenceBytes = 32..<40

  // MARK: - Mutations

  private mutating func randomFrames() -> [[UInt8]] {
    (0...int(2)).map { index in
      var frame = bytes(int(80))
      if index == 0 && int(2) == 0 {  // past the magic and version, into the header's fields
        var prefix: [UInt8] = []
        prefix.appendLittleEndian(Protocol.magic)
        prefix.appendLittleEndian(Protocol.version)
        frame = prefix + frame
      }
      return frame
    }
  }

  private mutating func overwrittenBytes() -> [[UInt8]] {
    var frames = seed().encode()
    let f = frames.count > 1 && int(4) == 0 ? 1 + int(frames.count - 1) : 0
    guard !frames[f].isEmpty else { return frames }
    for _ in 0...int(3) { frames[f][int(frames[f].count)] = edgeByte() }
    return frames
  }

  /// A header field (or a tensor descriptor's) set to 0, 1, its maximum, half of it or noise.
  private mutating func edgeValueField() -> [[UInt8]] {
    var frames = seed().encode()
    let tensors = (frames[0].count - Protocol.headerSize) / Protocol.descriptorSize
    var fields: [(offset: Int, size: Int)] = [
      (0, 4), (4, 2), (6, 1), (7, 1), (8, 4), (12, 2), (14, 2), (16, 4), (20, 2), (22, 2), (24, 8),
    ]
    for t in 0..<tensors {
      let base = Protocol.headerSize + t * Protocol.descriptorSize
      fields += [(base, 1), (base + 1, 1), (base + 2, 1), (base + 3, 1)]
      fields += (0..<Protocol.maxRank).map { (base + 4 + 4 * $0, 4) }
    }
    let field = fields[int(fields.count)]
    var value: UInt64
    switch int(6) {
    case 0: value = 0
    case 1: value = 1
    case 2: value = .max
    case 3: value = UInt64.max >> 1
    case 4: value = UInt64(int(16))
    default: value = rng.next()
    }
    for i in 0..<field.size {
      frames[0][field.offset + i] = UInt8(truncatingIfNeeded: value)
      value >>= 8
    }
    return frames
  }

  private mutating func resizedFrame() -> [[UInt8]] {
    var frames = seed().encode()
    let f = int(frames.count)
    if int(2) == 0 {
      frames[f].removeLast(frames[f].isEmpty ? 0 : 1 + int(frames[f].count))
    } else {
      frames[f] += bytes(1 + int(int(2) == 0 ? 4 : 64))
    }
    return frames
  }

  private mutating func rearrangedFrames() -> [[UInt8]] {
    var frames = seed().encode()
    switch int(5) {
    case 0 where frames.count > 1: frames.removeLast()
    case 1: frames.append(frames[int(frames.count)])
    case 2: frames.insert([], at: int(frames.count + 1))
    case 3 where frames.count > 2: frames.swapAt(1, 2)
    default: frames[0] = seed().encode()[0]  // another message's header over these tensors
    }
    return frames
  }

  /// A message that decodes but that no stage may take.
  private mutating func wrongForAStage() -> Message {
    var message = seeds[int(4)]  // a TRAIN, EVAL, MARKER or micro-batch TRAIN
    let labels = message.tensors.firstIndex { $0.role == .labels }
    switch int(9) {
    case 0 where labels != nil:
      let bad: [Int32] = [-1, Int32(classes), .max, .min]
      message.tensors[labels!] = WireTensor(role: .labels, labels: [0, 1, 2, bad[int(4)]])
    case 1:
      let shares: [Float] = [.nan, 0, -0.5, 2, .infinity]
      (message.microIndex, message.microCount) = (0, 2)
      message.tensors.removeAll { $0.role == .share }
      message.tensors.append(WireTensor(role: .share, shape: [1], floats: [shares[int(5)]]))
    case 2:
      (message.microIndex, message.microCount) = (
        [UInt16(2), 7, .max][int(3)], [UInt16(2), 5000, .max][int(3)]
      )
    case 3:
      let wrongWidth = width + 1 + int(3)
      message.tensors.removeAll { $0.role == .activations }
      message.tensors.insert(
        WireTensor(
          role: .activations, shape: [4, wrongWidth],
          floats: [Float](repeating: 0, count: 4 * wrongWidth)), at: 0)
    case 4 where labels != nil: message.tensors.remove(at: labels!)
    case 5: message.kind = [.result, .stats, .hello, .grad, .feedback, .bye][int(6)]
    case 6: (message.kind, message.flags) = (.marker, UInt8(4 + int(250)))
    case 7: message.job = job &+ 1 &+ UInt32(int(3))
    default:
      message.tensors = message.tensors.map {
        WireTensor(
          role: $0.role, dtype: $0.dtype == .f32 ? .i32 : .f32, shape: $0.shape, bytes: $0.bytes)
      }
    }
    return message
  }

  // MARK: - Randomness

  private mutating func seed() -> Message { seeds[int(seeds.count)] }
  private mutating func int(_ bound: Int) -> Int { Int(rng.next() % UInt64(bound)) }
  private mutating func bytes(_ count: Int) -> [UInt8] {
    (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
  }
  private mutating func edgeByte() -> UInt8 {
    [0, 1, 0x7F, 0x80, 0xFF, UInt8(truncatingIfNeeded: rng.next())][int(6)]
  }
}

extension [UInt8] {
  fileprivate mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
    Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
  }
}
