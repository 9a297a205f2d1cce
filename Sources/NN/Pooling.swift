import Linalg

/// Max pooling over NHWC maps with a square window; backward routes dy to each window's
/// maximum.
///
/// Shapes: x [B, H, W, C], y [B, OH, OW, C] with OH = (H − k)/s + 1.
public struct MaxPool2D: Layer {
  public let height: Int, width: Int, channels: Int, size: Int, stride: Int
  public let outHeight: Int, outWidth: Int

  public init?(inputShape: [Int], size: Int, stride: Int) {
    guard inputShape.count == 3, size > 0, stride > 0, inputShape[0] >= size,
      inputShape[1] >= size
    else { return nil }
    (height, width, channels) = (inputShape[0], inputShape[1], inputShape[2])
    (self.size, self.stride) = (size, stride)
    outHeight = (height - size) / stride + 1
    outWidth = (width - size) / stride + 1
  }

  public var summary: String { "maxpool \(size)/\(stride)" }
  public var outputShape: [Int] { [outHeight, outWidth, channels] }

  public func forward(_ x: Tensor, _ store: ParameterStore) -> (Tensor, LayerCache) {
    let batch = x.batchSize
    let perSample = outHeight * outWidth * channels
    var y = [Float](repeating: 0, count: batch * perSample)
    var argmax = [Int32](repeating: 0, count: batch * perSample)
    // Channels are contiguous in NHWC: compare whole channel runs, window cell by cell, with
    // branch-free selects (the data decides comparisons at random); samples split over threads.
    x.storage.withUnsafeBufferPointer { xp in
      y.withUnsafeMutableBufferPointer { yp in
        argmax.withUnsafeMutableBufferPointer { ap in
          let (X, Y, A) = (
            SharedPointer(xp.baseAddress!), SharedPointer(yp.baseAddress!),
            SharedPointer(ap.baseAddress!)
          )
          ComputeThreads.chunks(
            batch, minimum: max(1, (1 << 15) / max(height * width * channels, 1))
          ) { samples in
            for b in samples {
              for oh in 0..<outHeight {
                for ow in 0..<outWidth {
                  let o = ((b * outHeight + oh) * outWidth + ow) * channels
                  let first = ((b * height + oh * stride) * width + ow * stride) * channels
                  var c = 0
                  // Eight channels at a time in registers: the window's maximum and where it is.
                  while c + 8 <= channels {
                    var best = SIMD8<Float>(
                      UnsafeBufferPointer(start: X.base + first + c, count: 8))
                    var at =
                      SIMD8<Int32>(repeating: Int32(first + c))
                      &+ SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7)
                    for kh in 0..<size {
                      for kw in 0..<size where kh > 0 || kw > 0 {
                        let base =
                          ((b * height + oh * stride + kh) * width + ow * stride + kw) * channels
                          + c
                        let v = SIMD8<Float>(UnsafeBufferPointer(start: X.base + base, count: 8))
                        let better = v .> best
                        best.replace(with: v, where: better)
                        at.replace(
                          with: SIMD8<Int32>(repeating: Int32(base))
                            &+ SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7), where: better)
                      }
                    }
                    for j in 0..<8 {
                      Y[o + c + j] = best[j]
                      A[o + c + j] = at[j]
                    }
                    c += 8
                  }
                  for c in c..<channels {
                    Y[o + c] = X[first + c]
                    A[o + c] = Int32(first + c)
                  }
                  for kh in 0..<size {
                    for kw in 0..<size where kh > 0 || kw > 0 {
                      let base =
                        ((b * height + oh * stride + kh) * width + ow * stride + kw) * channels
                      for c in (channels - channels % 8)..<channels {
                        let v = X[base + c]
                        let better = v > Y[o + c]
                        Y[o + c] = better ? v : Y[o + c]
                        A[o + c] = better ? Int32(base + c) : A[o + c]
                      }
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
    return (
      Tensor(shape: [batch, outHeight, outWidth, channels], storage: y),
      LayerCache(indices: argmax)
    )
  }

  public func backward(
    _ dy: Tensor, _ cache: LayerCache, _ store: ParameterStore, inputGradient: Bool
  ) -> Tensor? {
    guard inputGradient else { return nil }
    let batch = dy.batchSize
    let (perOutput, perInput) = (outHeight * outWidth * channels, height * width * channels)
    var dx = [Float](repeating: 0, count: batch * perInput)
    // A sample's windows lie inside that sample: samples split over threads write apart.
    dy.storage.withUnsafeBufferPointer { dyp in
      cache.indices.withUnsafeBufferPointer { ip in
        dx.withUnsafeMutableBufferPointer { xp in
          let (D, I, X) = (
            SharedPointer(dyp.baseAddress!), SharedPointer(ip.baseAddress!),
            SharedPointer(xp.baseAddress!)
          )
          ComputeThreads.chunks(batch, minimum: max(1, (1 << 15) / max(perInput, 1))) { samples in
            for o in samples.lowerBound * perOutput..<samples.upperBound * perOutput {
              X[Int(I[o])] += D[o]
            }
          }
        }
      }
    }
    return Tensor(shape: [batch, height, width, channels], storage: dx)
  }
}

/// Averages over windows of NHWC maps; a window of the whole map is global average pooling.
///
/// Shapes: x [B, H, W, C], y [B, OH, OW, C] with OH = (H − kh)/s + 1; each dy spreads evenly
/// back over its window.
public struct AveragePool2D: Layer {
  public let height: Int, width: Int, channels: Int
  public let windowHeight: Int, windowWidth: Int, stride: Int
  public let outHeight: Int, outWidth: Int

  public init?(inputShape: [Int], size: Int, stride: Int) {
    self.init(inputShape: inputShape, window: (size, size), stride: stride)
  }

  /// Global average pooling: [B, H, W, C] → [B, 1, 1, C] (linear reads it as [B, C]).
  public init?(globalOver inputShape: [Int]) {
    guard inputShape.count == 3 else { return nil }
    self.init(inputShape: inputShape, window: (inputShape[0], inputShape[1]), stride: 1)
  }

  init?(inputShape: [Int], window: (Int, Int), stride: Int) {
    guard inputShape.count == 3, window.0 > 0, window.1 > 0, stride > 0,
      inputShape[0] >= window.0, inputShape[1] >= window.1
    else { return nil }
    (height, width, channels) = (inputShape[0], inputShape[1], inputShape[2])
    (windowHeight, windowWidth, self.stride) = (window.0, window.1, stride)
    outHeight = (height - windowHeight) / stride + 1
    outWidth = (width - windowWidth) / stride + 1
  }

  public var summary: String {
    outHeight == 1 && outWidth == 1 ? "global average pool" : "avgpool \(windowHeight)/\(stride)"
  }
  public var outputShape: [Int] { [outHeight, outWidth, channels] }
  /// Calls body(outputIndex, inputIndex) for every input position of every window.
  @inline(__always)
  func forEachWindowPair(batch: Int, _ body: (Int, Int) -> Void) {
    var o = 0
    for b in 0..<batch {
      for oh in 0..<outHeight {
        for ow in 0..<outWidth {
          for kh in 0..<windowHeight {
            for kw in 0..<windowWidth {
              let base = ((b * height + oh * stride + kh) * width + ow * stride + kw) * channels
              for c in 0..<channels { body(o + c, base + c) }
            }
          }
          o += channels
        }
      }
    }
  }

  public func forward(_ x: Tensor, _ store: ParameterStore) -> (Tensor, LayerCache) {
    let batch = x.batchSize
    let scale = 1 / Float(windowHeight * windowWidth)
    var y = [Float](repeating: 0, count: batch * outHeight * outWidth * channels)
    x.storage.withUnsafeBufferPointer { xp in
      y.withUnsafeMutableBufferPointer { yp in
        forEachWindowPair(batch: batch) { o, i in yp[o] += xp[i] }
        for o in yp.indices { yp[o] *= scale }
      }
    }
    return (Tensor(shape: [batch, outHeight, outWidth, channels], storage: y), LayerCache())
  }

  public func backward(
    _ dy: Tensor, _ cache: LayerCache, _ store: ParameterStore, inputGradient: Bool
  ) -> Tensor? {
    guard inputGradient else { return nil }
    let batch = dy.batchSize
    let scale = 1 / Float(windowHeight * windowWidth)
    var dx = [Float](repeating: 0, count: batch * height * width * channels)
    dy.storage.withUnsafeBufferPointer { dyp in
      dx.withUnsafeMutableBufferPointer { xp in
        forEachWindowPair(batch: batch) { o, i in xp[i] += dyp[o] * scale }
      }
    }
    return Tensor(shape: [batch, height, width, channels], storage: dx)
  }
}

/// Averages NHWC maps down to a fixed `outHeight × outWidth` grid; output cell i covers input
/// rows ⌊i·H/OH⌋ ..< ⌈(i+1)·H/OH⌉ (likewise columns), as PyTorch's adaptive pooling.
public struct AdaptiveAveragePool2D: Layer {
  public let height: Int, width: Int, channels: Int
  public let outHeight: Int, outWidth: Int

  public init?(inputShape: [Int], outHeight: Int, outWidth: Int) {
    guard inputShape.count == 3, outHeight >= 1, outWidth >= 1, outHeight <= inputShape[0],
      outWidth <= inputShape[1]
    else { return nil }
    (height, width, channels) = (inputShape[0], inputShape[1], inputShape[2])
    (self.outHeight, self.outWidth) = (outHeight, outWidth)
  }

  public var summary: String { "adaptive avgpool → \(outHeight)×\(outWidth)" }
  public var outputShape: [Int] { [outHeight, outWidth, channels] }

  public static func window(_ i: Int, _ size: Int, _ out: Int) -> Range<Int> {
    (i * size / out)..<(((i + 1) * size + out - 1) / out)
  }

  /// Calls body(outputIndex, inputIndex, 1 / window size) for every input cell of every window.
  @inline(__always)
  func forEachWindowPair(batch: Int, _ body: (Int, Int, Float) -> Void) {
    var o = 0
    for b in 0..<batch {
      for oh in 0..<outHeight {
        let rows = Self.window(oh, height, outHeight)
        for ow in 0..<outWidth {
          let cols = Self.window(ow, width, outWidth)
          let scale = 1 / Float(rows.count * cols.count)
          for ih in rows {
            for iw in cols {
              let base = ((b * height + ih) * width + iw) * channels
              for c in 0..<channels { body(o + c, base + c, scale) }
            }
          }
          o += channels
        }
      }
    }
  }

  public func forward(_ x: Tensor, _ store: ParameterStore) -> (Tensor, LayerCache) {
    var y = [Float](repeating: 0, count: x.batchSize * outHeight * outWidth * channels)
    x.storage.withUnsafeBufferPointer { xp in
      y.withUnsafeMutableBufferPointer { yp in
        forEachWindowPair(batch: x.batchSize) { o, i, s in yp[o] += xp[i] * s }
      }
    }
    return (Tensor(shape: [x.batchSize, outHeight, outWidth, channels], storage: y), LayerCache())
  }

  public func backward(
    _ dy: Tensor, _ cache: LayerCache, _ store: ParameterStore, inputGradient: Bool
  ) -> Tensor? {
    guard inputGradient else { return nil }
    var dx = [Float](repeating: 0, count: dy.batchSize * height * width * channels)
    dy.storage.withUnsafeBufferPointer { dyp in
      dx.withUnsafeMutableBufferPointer { xp in
        forEachWindowPair(batch: dy.batchSize) { o, i, s in xp[i] += dyp[o] * s }
      }
    }
    return Tensor(shape: [dy.batchSize, height, width, channels], storage: dx)
  }
}
