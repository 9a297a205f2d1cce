
/// A 2-D convolution over NHWC maps, computed as im2col followed by one sgemm.
///
/// Shapes: x [B, H, W, C], W [F, k, k, C] (= [F, K] with K = k·k·C), b [F],
/// col [B·OH·OW, K], y [B, OH, OW, F] with OH = (H + 2p − k)/s + 1.
public struct Conv2D: Layer {
  public let height: Int, width: Int, channels: Int
  public let filters: Int, kernel: Int, stride: Int, padding: Int
  public let outHeight: Int, outWidth: Int
  /// The convolution as an affine map on im2col rows: W [F, K], b [F].
  let affine: Affine

  /// Fails (returns nil) when the kernel does not fit the padded input.
  public init?(
    name: String, inputShape: [Int], filters: Int, kernel: Int, stride: Int, padding: Int,
    layout: inout ParameterLayout
  ) {
    guard inputShape.count == 3, kernel > 0, stride > 0, padding >= 0 else { return nil }
    (height, width, channels) = (inputShape[0], inputShape[1], inputShape[2])
    (self.filters, self.kernel, self.stride, self.padding) = (filters, kernel, stride, padding)
    outHeight = (height + 2 * padding - kernel) / stride + 1
    outWidth = (width + 2 * padding - kernel) / stride + 1
    guard height + 2 * padding >= kernel, width + 2 * padding >= kernel else { return nil }
    affine = Affine(
      inputs: kernel * kernel * inputShape[2], outputs: filters,
      weightOffset: layout.add("\(name).weight", shape: [filters, kernel, kernel, inputShape[2]]),
      biasOffset: layout.add("\(name).bias", shape: [filters]))
  }

  var patch: Int { kernel * kernel * channels }
  public var summary: String { "conv \(kernel)×\(kernel)/\(stride) \(channels)→\(filters)" }
  public var outputShape: [Int] { [outHeight, outWidth, filters] }
  public var forwardFLOPsPerSample: Int { 2 * outHeight * outWidth * patch * filters }

  public func initialize(_ store: ParameterStore, _ rng: inout SeededGenerator) {
    heNormal(store.value(at: affine.weightOffset), count: filters * patch, fanIn: patch, &rng)
    store.value(at: affine.biasOffset).update(repeating: 0, count: filters)
  }

  public func scaleWeights(by factor: Float, _ store: ParameterStore) { affine.scaleWeights(by: factor, store) }

  public func forward(_ x: Tensor, _ store: ParameterStore) -> (Tensor, LayerCache) {
    let batch = x.batchSize
    let rows = batch * outHeight * outWidth
    let col = im2col(x)
    let y = affine.forward(col, rows: rows, store)  // y[R, F] = col[R, K] · W[F, K]ᵀ + b
    let out = Tensor(shape: [batch, outHeight, outWidth, filters], storage: y)
    return (out, LayerCache(tensors: [Tensor(shape: [rows, patch], storage: col)]))
  }

  public func backward(
    _ dy: Tensor, _ cache: LayerCache, _ store: ParameterStore, inputGradient: Bool
  ) -> Tensor? {
    let col = cache.tensors[0]
    let rows = col.shape[0]
    guard let dcol = affine.backward(dy.storage, col.storage, rows: rows, store, inputGradient: inputGradient) else {
      return nil
    }
    return col2im(dcol, batch: rows / (outHeight * outWidth))
  }

  /// Visits every (row of col, position in patch, input offset or nil for padding), one
  /// channel run at a time: the one loop that im2col and col2im share.
  @inline(__always)
  func forEachPatchRun(batch: Int, _ body: (_ colOffset: Int, _ inputOffset: Int?) -> Void) {
    var row = 0
    for b in 0..<batch {
      for oh in 0..<outHeight {
        for ow in 0..<outWidth {
          var colOffset = row * patch
          for kh in 0..<kernel {
            let ih = oh * stride - padding + kh
            for kw in 0..<kernel {
              let iw = ow * stride - padding + kw
              let inside = ih >= 0 && ih < height && iw >= 0 && iw < width
              body(colOffset, inside ? ((b * height + ih) * width + iw) * channels : nil)
              colOffset += channels
            }
          }
          row += 1
        }
      }
    }
  }

  func im2col(_ x: Tensor) -> [Float] {
    let batch = x.batchSize
    let c = channels
    return [Float](unsafeUninitializedCapacity: batch * outHeight * outWidth * patch) {
      buffer, initialized in
      let col = buffer.baseAddress!
      x.storage.withUnsafeBufferPointer { xp in
        let xb = xp.baseAddress!
        forEachPatchRun(batch: batch) { colOffset, inputOffset in
          if let inputOffset {
            (col + colOffset).update(from: xb + inputOffset, count: c)
          } else {
            (col + colOffset).update(repeating: 0, count: c)
          }
        }
      }
      initialized = buffer.count
    }
  }

  func col2im(_ dcol: [Float], batch: Int) -> Tensor {
    var dx = [Float](repeating: 0, count: batch * height * width * channels)
    let c = channels
    dcol.withUnsafeBufferPointer { dp in
      dx.withUnsafeMutableBufferPointer { xp in
        let d = dp.baseAddress!, x = xp.baseAddress!
        forEachPatchRun(batch: batch) { colOffset, inputOffset in
          guard let inputOffset else { return }
          for i in 0..<c { x[inputOffset + i] += d[colOffset + i] }
        }
      }
    }
    return Tensor(shape: [batch, height, width, channels], storage: dx)
  }
}
