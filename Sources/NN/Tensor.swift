/// A dense row-major `Float` tensor: a shape and contiguous storage.
///
/// The first dimension is the batch. Image tensors are NHWC (`[B, H, W, C]`), so one
/// sample's pixels and a pixel's channels are contiguous, which is what im2col wants.
public struct Tensor: Sendable, Equatable {
  public var shape: [Int]
  public var storage: [Float]

  public init(shape: [Int], storage: [Float]) {
    precondition(
      shape.reduce(1, *) == storage.count,
      "Tensor: \(shape) needs \(shape.reduce(1, *)) values, got \(storage.count)")
    self.shape = shape
    self.storage = storage
  }

  public init(zeros shape: [Int]) {
    self.init(shape: shape, storage: [Float](repeating: 0, count: shape.reduce(1, *)))
  }

  /// The number of values.
  public var count: Int { storage.count }
  /// The first dimension.
  public var batchSize: Int { shape.first ?? 1 }
  /// The shape of one sample (the shape without its first dimension).
  public var sampleShape: [Int] { Array(shape.dropFirst()) }
  /// Values per sample.
  public var sampleCount: Int { batchSize == 0 ? 0 : count / batchSize }

  /// The same values seen with another shape of equal size.
  public func reshaped(_ newShape: [Int]) -> Tensor {
    Tensor(shape: newShape, storage: storage)
  }
}
