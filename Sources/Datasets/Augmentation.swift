import NN

/// Seeded data augmentation of training images, applied by whoever feeds the batches (the
/// scheduler, the one-process trainer) so every schedule and process sees the same ones: each
/// sample is shifted by up to ±`padding` pixels in each direction, the uncovered border
/// filled with black (a random crop of the image padded by `padding`), and mirrored left to
/// right with probability ½ when `flip`. What a sample gets depends only on the seed, the epoch
/// and the sample's index in the data set.
public struct Augmentation: Sendable, Equatable {
  public var padding: Int
  public var flip: Bool
  public var seed: UInt64

  public init(padding: Int, flip: Bool, seed: UInt64) {
    (self.padding, self.flip, self.seed) = (padding, flip, seed)
  }

  /// The shift (rows, columns) and mirroring drawn for sample `index` in `epoch`.
  public func draw(index: Int, epoch: Int) -> (dy: Int, dx: Int, mirror: Bool) {
    var rng = SeededGenerator(seed: seed, stream: UInt64(epoch) << 32 | UInt64(index))
    let span = UInt64(2 * padding + 1)
    let dy = Int(rng.next() % span) - padding
    let dx = Int(rng.next() % span) - padding
    return (dy, dx, flip && rng.next() & 1 == 1)
  }

  /// Moves each image of `raw` (the samples at `indices`, each [H, W, C] values) as drawn:
  /// out[y][x] = in[y + dy][x′ + dx] with x′ = W − 1 − x when mirrored, else x; 0 outside.
  public func apply(
    _ raw: inout RawImages, sampleShape: [Int], indices: ArraySlice<Int>, epoch: Int
  ) {
    switch raw {
    case .bytes(var b):
      apply(&b, sampleShape: sampleShape, indices: indices, epoch: epoch)
      raw = .bytes(b)
    case .floats(var f):
      apply(&f, sampleShape: sampleShape, indices: indices, epoch: epoch)
      raw = .floats(f)
    }
  }

  func apply<T: Numeric>(_ raw: inout [T], sampleShape: [Int], indices: ArraySlice<Int>, epoch: Int)
  {
    let size = sampleShape.reduce(1, *)
    for (row, index) in indices.enumerated() {
      let d = draw(index: index, epoch: epoch)
      let base = row * size
      raw.replaceSubrange(
        base..<(base + size),
        with: Self.move(
          raw[base..<(base + size)], shape: sampleShape, dy: d.dy, dx: d.dx, mirror: d.mirror))
    }
  }

  /// One [H, W, C] image moved: out[y][x] = in[y + dy][x′ + dx], x′ = W − 1 − x when
  /// `mirror`, else x; 0 where that falls outside.
  public static func move<T: Numeric>(
    _ image: ArraySlice<T>, shape: [Int], dy: Int, dx: Int, mirror: Bool
  ) -> [T] {
    let (h, w, c) = (shape[0], shape[1], shape[2])
    let base = image.startIndex
    var out = [T](repeating: 0, count: h * w * c)
    for y in 0..<h {
      for x in 0..<w {
        let (sy, sx) = (y + dy, (mirror ? w - 1 - x : x) + dx)
        guard (0..<h).contains(sy), (0..<w).contains(sx) else { continue }
        for k in 0..<c { out[(y * w + x) * c + k] = image[base + (sy * w + sx) * c + k] }
      }
    }
    return out
  }
}

extension Dataset {
  /// The training batch at `indices` for `epoch`: moved by `augmentation` when there is one
  /// (from the raw bytes, then normalised, so the two agree), with the raw bytes it was made
  /// from (a context that ships images reads them).
  public func trainingBatch(_ indices: ArraySlice<Int>, epoch: Int, augmentation: Augmentation?)
    -> (batch: Batch, raw: () -> RawImages)
  {
    guard let augmentation, sampleShape.count == 3 else {
      return (batch(indices), { rawBatch(indices) })
    }
    var raw = rawBatch(indices)
    augmentation.apply(&raw, sampleShape: sampleShape, indices: indices, epoch: epoch)
    let images = Tensor(shape: [indices.count] + sampleShape, storage: normalisation.apply(raw))
    return (Batch(images: images, labels: indices.map { labels[$0] }), { raw })
  }
}
