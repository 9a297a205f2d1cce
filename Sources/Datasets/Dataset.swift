import Foundation
import NN

/// A labelled image data set held in memory, already normalised, NHWC per sample.
public struct Dataset: Sendable {
  /// Per-sample shape, [H, W, C].
  public var sampleShape: [Int]
  public var classes: Int
  /// N × (H·W·C) values, normalised.
  public var pixels: [Float]
  public var labels: [Int32]
  /// The images as the data file holds them (N × H·W·C), kept for augmentation and for
  /// methods that ship raw input as context.
  public var raw: RawImages
  /// How `raw` became `pixels`.
  public let normalisation: ImageNormalisation

  public init(
    sampleShape: [Int], classes: Int, raw: RawImages, labels: [Int32],
    normalisation: ImageNormalisation
  ) {
    (self.sampleShape, self.classes, self.raw, self.labels, self.normalisation) = (
      sampleShape, classes, raw, labels, normalisation
    )
    pixels = normalisation.apply(raw)
  }

  /// The stored images at `indices` (B × H·W·C).
  public func rawBatch(_ indices: ArraySlice<Int>) -> RawImages {
    raw.samples(indices, size: sampleSize)
  }

  public var count: Int { labels.count }
  public var sampleSize: Int { sampleShape.reduce(1, *) }

  /// The first `limit` samples (all when `limit` is nil or not smaller).
  public func prefix(_ limit: Int?) -> Dataset {
    guard let limit, limit < count else { return self }
    var copy = self
    copy.labels = Array(labels.prefix(limit))
    copy.pixels = Array(pixels.prefix(limit * sampleSize))
    copy.raw = raw.samples(0..<limit, size: sampleSize)
    return copy
  }

  /// The samples at `indices` as a batch: images [B, H, W, C] and labels [B].
  public func batch(_ indices: ArraySlice<Int>) -> Batch {
    let n = sampleSize
    var x = [Float](repeating: 0, count: indices.count * n)
    var y = [Int32](repeating: 0, count: indices.count)
    x.withUnsafeMutableBufferPointer { xp in
      pixels.withUnsafeBufferPointer { pp in
        for (row, index) in indices.enumerated() {
          (xp.baseAddress! + row * n).update(from: pp.baseAddress! + index * n, count: n)
          y[row] = labels[index]
        }
      }
    }
    return Batch(images: Tensor(shape: [indices.count] + sampleShape, storage: x), labels: y)
  }
}

/// One batch: images and the labels that travel with them.
public struct Batch: Sendable {
  public var images: Tensor
  public var labels: [Int32]

  public init(images: Tensor, labels: [Int32]) { (self.images, self.labels) = (images, labels) }
}

/// Images as a data file stores them: bytes (0…255, read as byte / 255) or floats (read as
/// they are). Bytes stay bytes in memory and on the wire: a quarter of the floats.
public enum RawImages: Sendable, Equatable {
  case bytes([UInt8])
  case floats([Float])

  /// Whether the file stored floats (else bytes).
  public var isFloat: Bool { if case .floats = self { true } else { false } }

  public var count: Int {
    switch self {
    case .bytes(let b): b.count
    case .floats(let f): f.count
    }
  }

  /// The samples of `size` values at `indices`, in that order.
  public func samples<S: Sequence<Int>>(_ indices: S, size: Int) -> RawImages {
    func gather<T>(_ all: [T]) -> [T] { indices.flatMap { all[($0 * size)..<(($0 + 1) * size)] } }
    switch self {
    case .bytes(let b): return .bytes(gather(b))
    case .floats(let f): return .floats(gather(f))
    }
  }
}

/// How stored image values become the network's input: x = (v − mean[c]) / std[c], with v
/// the stored value (a byte / 255) and c the channel (the last dimension); one mean and std
/// serve every channel.
public struct ImageNormalisation: Codable, Sendable, Equatable {
  public var mean: [Float]
  public var std: [Float]

  public init(mean: [Float], std: [Float]) {
    precondition(mean.count == std.count && !mean.isEmpty, "one mean and one std per channel")
    (self.mean, self.std) = (mean, std)
  }

  public func apply(_ raw: RawImages) -> [Float] {
    switch raw {
    case .bytes(let b): apply(b.map { Float($0) }, range: 255)
    case .floats(let f): apply(f, range: 1)
    }
  }

  /// (v / range − mean[c]) / std[c] for every stored value v.
  func apply(_ values: [Float], range: Float) -> [Float] {
    let channels = mean.count
    var out = [Float](repeating: 0, count: values.count)
    for i in 0..<values.count {
      let c = i % channels
      out[i] = (values[i] / range - mean[c]) / std[c]
    }
    return out
  }

  /// Per-channel mean and population standard deviation of `raw` (as the network reads it)
  /// over `channels` interleaved channels; a channel without spread gets std 1.
  public static func measured(_ raw: RawImages, channels: Int) -> ImageNormalisation {
    var sum = [Double](repeating: 0, count: channels)
    var squares = sum
    func add(_ v: Double, _ i: Int) {
      sum[i % channels] += v
      squares[i % channels] += v * v
    }
    switch raw {
    case .bytes(let b): for (i, v) in b.enumerated() { add(Double(v) / 255, i) }
    case .floats(let f): for (i, v) in f.enumerated() { add(Double(v), i) }
    }
    let n = Double(max(raw.count / channels, 1))
    let mean = sum.map { $0 / n }
    let std = (0..<channels).map { c in (max(squares[c] / n - mean[c] * mean[c], 0)).squareRoot() }
    return ImageNormalisation(
      mean: mean.map(Float.init), std: std.map { $0 > 1e-12 ? Float($0) : 1 })
  }
}
