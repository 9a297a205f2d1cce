import Datasets
import Learning
import NN
import Wire

/// The handoff (`Learning.Handoff`) on the wire: what stage k sends stage k + 1, what the
/// feeder sends stage 0, and back to the receiving stage's input — checked against what that
/// stage expects before anything is used. Labels always travel; images travel as raw bytes
/// (a quarter of the floats) and are normalised on arrival exactly as the data set is.
struct StageHandoff {
  let handoff: Handoff
  let inputShape: [Int]
  let classes: Int
  let sampleShape: [Int]
  let normalisation: ImageNormalisation
  let imageType: DType

  init(_ assignment: Assignment, inputShape: [Int]) {
    (handoff, self.inputShape, classes) = (assignment.handoff, inputShape, assignment.classes)
    (sampleShape, normalisation) = (assignment.sampleShape, assignment.normalisation)
    imageType = assignment.floatImages ? .f32 : .u8
  }

  /// The tensors of a TRAIN or EVAL message, against the stage's input shape, the classes
  /// and what its method needs.
  func check(_ message: Message) throws(WireError) {
    let x = try message.expect(.activations, handoff.format.dtype, sampleShape: inputShape)
    let batch = x.shape[0]
    let labels = try message.expect(.labels, .i32, sampleShape: [], batch: batch)
    guard labels.int32s.allSatisfy({ (0..<Int32(classes)).contains($0) }) else {
      throw .unexpected("labels outside 0…\(classes - 1)")
    }
    if handoff.belief {
      _ = try message.expect(.belief, .f32, sampleShape: [classes], batch: batch)
    }
    if handoff.images {
      _ = try message.expect(.context, imageType, sampleShape: sampleShape, batch: batch)
    }
    if let shape = handoff.skip {
      _ = try message.expect(.skip, handoff.format.dtype, sampleShape: shape, batch: batch)
    }
  }

  /// The stage's input from a message `check` accepted.
  func input(_ message: Message) -> Stage.Input {
    let images = message.tensor(.context).map { raw in
      Tensor(
        shape: raw.shape,
        storage: normalisation.apply(raw.dtype == .u8 ? .bytes(raw.bytes) : .floats(raw.floats)))
    }
    return Stage.Input(
      x: Tensor(decoding: message.tensor(.activations)!), labels: message.tensor(.labels)!.int32s,
      belief: handoff.belief ? message.tensor(.belief).map { Tensor($0) } : nil,
      image: handoff.images ? images : nil,
      previousInput: handoff.skip != nil ? message.tensor(.skip).map(Tensor.init(decoding:)) : nil)
  }

  /// What the feeder sends stage 0: the batch, and its raw images when the method's contexts
  /// need them.
  static func feed(_ batch: Batch, raw: @autoclosure () -> RawImages, into handoff: Handoff)
    -> [WireTensor]
  {
    var tensors = [
      WireTensor(role: .activations, batch.images, as: handoff.format),
      WireTensor(role: .labels, labels: batch.labels),
    ]
    guard handoff.images else { return tensors }
    switch raw() {
    case .bytes(let bytes):
      tensors.append(
        WireTensor(role: .context, dtype: .u8, shape: batch.images.shape, bytes: bytes))
    case .floats(let floats):
      tensors.append(WireTensor(role: .context, shape: batch.images.shape, floats: floats))
    }
    return tensors
  }

  /// Stage k's output for stage k + 1 under `input`'s header: its activations (detached),
  /// the labels, and what stage k + 1 needs — the belief and augmented input from this
  /// pass, the images passed along; a micro-batch's share of its batch travels on too.
  static func output(
    _ activations: Tensor, of pass: Stage.Pass?, for input: Message, from stage: Int, next: Handoff
  ) -> Message {
    var message = input
    message.stage = UInt16(stage + 1)
    message.tensors = [
      WireTensor(role: .activations, activations, as: next.format), input.tensor(.labels)!,
    ]
    if next.belief, let belief = pass?.belief {
      message.tensors.append(WireTensor(role: .belief, belief))
    }
    if next.images, let images = input.tensor(.context) { message.tensors.append(images) }
    if next.skip != nil, let augmented = pass?.augmentedInput {
      message.tensors.append(WireTensor(role: .skip, augmented, as: next.format))
    }
    if let share = input.tensor(.share) { message.tensors.append(share) }
    return message
  }
}

extension WireTensor {
  init(role: Role, _ tensor: Tensor) {
    self.init(role: role, shape: tensor.shape, floats: tensor.storage)
  }

  /// `tensor` [rows, …] stored as `format` keeps it.
  init(role: Role, _ tensor: Tensor, as format: ValueFormat) {
    guard format != .f32 else {
      self.init(role: role, tensor)
      return
    }
    self.init(
      role: role, dtype: format.dtype, shape: tensor.shape,
      bytes: format.encode(tensor.storage, rows: tensor.shape.first ?? 1))
  }
}

extension ValueFormat {
  /// The wire's element type for values stored this way.
  var dtype: DType {
    switch self {
    case .f32: .f32
    case .f16: .f16
    case .bf16: .bf16
    case .int8: .i8
    }
  }
}

extension Tensor {
  /// An f32 wire tensor's values (checked by `Message.expect` first).
  init(_ wire: WireTensor) { self.init(shape: wire.shape, storage: wire.floats) }

  /// The values of an f32, f16, bf16 or i8 wire tensor (its dtype checked by `Message.expect`).
  init(decoding wire: WireTensor) {
    guard let format = ValueFormat.allCases.first(where: { $0.dtype == wire.dtype }), format != .f32
    else {
      self.init(wire)
      return
    }
    self.init(
      shape: wire.shape,
      storage: format.decode(wire.bytes, count: wire.elementCount, rows: wire.shape.first ?? 1))
  }
}
