import Foundation
import NN

/// A labelled image data set held in memory, already normalised, NHWC per sample.
public struct Dataset: Sendable {
  /// Per-sample shape, [H, W, C].
  public var sampleShape: [Int]
  public var classes: Int
  /// N × (H·W·C) values.
  public var pixels: [Float]
  public var labels: [Int32]
  /// The raw bytes of each image (N × H·W·C), kept for methods that ship raw input as context.
  public var rawPixels: [UInt8]
  /// pixels = (raw / 255 − mean) / std.
  public let mean: Float
  public let std: Float

  public init(sampleShape: [Int], classes: Int, rawPixels: [UInt8], labels: [Int32], mean: Float, std: Float) {
    self.sampleShape = sampleShape
    self.classes = classes
    self.rawPixels = rawPixels
    self.labels = labels
    (self.mean, self.std) = (mean, std)
    pixels = Self.normalise(rawPixels, mean: mean, std: std)
  }

  /// Raw pixel bytes as the network sees them: (raw / 255 − mean) / std.
  public static func normalise(_ raw: [UInt8], mean: Float, std: Float) -> [Float] {
    raw.map { (Float($0) / 255 - mean) / std }
  }

  /// The raw bytes of the images at `indices` (B × H·W·C).
  public func rawBatch(_ indices: ArraySlice<Int>) -> [UInt8] {
    let n = sampleSize
    var bytes = [UInt8]()
    bytes.reserveCapacity(indices.count * n)
    for index in indices { bytes += rawPixels[(index * n)..<((index + 1) * n)] }
    return bytes
  }

  public var count: Int { labels.count }
  public var sampleSize: Int { sampleShape.reduce(1, *) }

  /// The first `limit` samples (all when `limit` is nil or not smaller).
  public func prefix(_ limit: Int?) -> Dataset {
    guard let limit, limit < count else { return self }
    var copy = self
    copy.labels = Array(labels.prefix(limit))
    copy.pixels = Array(pixels.prefix(limit * sampleSize))
    copy.rawPixels = Array(rawPixels.prefix(limit * sampleSize))
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
}
