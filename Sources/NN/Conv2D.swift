import Foundation
import Linalg

/// A 2-D convolution over NHWC maps: oneDNN's JIT kernels where they exist for this CPU and
/// shape (`Linalg.Convolution`), else im2col followed by one sgemm — the same function.
///
/// Shapes: x [B, H, W, C], W [F, k, k, C] (= [F, K] with K = k·k·C), b [F],
/// col [B·OH·OW, K], y [B, OH, OW, F] with OH = (H + 2p − k)/s + 1.
public struct Conv2D: Layer {
  /// How the convolution is computed.
  public enum Engine: String, Sendable {
    /// oneDNN when it has a fast kernel here, else im2col.
    case automatic
    /// Always im2col + sgemm (`STAGEWISE_CONVOLUTION=im2col` makes it every layer's choice).
    case im2col
  }

  public let height: Int, width: Int, channels: Int
  public let filters: Int, kernel: Int, stride: Int, padding: Int
  public let outHeight: Int, outWidth: Int
  /// The convolution as an affine map on im2col rows: W [F, K], b [F].
  let affine: Affine
  public let engine: Engine
  /// oneDNN primitives by batch size and thread count, made on first use.
  let primitives = ConvolutionCache()

  /// Fails (returns nil) when the kernel does not fit the padded input.
  public init?(
    name: String, inputShape: [Int], filters: Int, kernel: Int, stride: Int, padding: Int,
    layout: inout ParameterLayout, engine: Engine = .automatic
  ) {
    self.engine =
      ProcessInfo.processInfo.environment["STAGEWISE_CONVOLUTION"] == "im2col" ? .im2col : engine
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

  public func scaleWeights(by factor: Float, _ store: ParameterStore) {
    affine.scaleWeights(by: factor, store)
  }

  /// oneDNN's primitives for this batch size, or nil for im2col.
  func convolution(batch: Int) -> Convolution? {
    guard engine == .automatic else { return nil }
    return primitives.get(
      ConvolutionShape(
        batch: batch, height: height, width: width, channels: channels, filters: filters,
        kernel: kernel, stride: stride,
        padding: padding))
  }

  public func forward(_ x: Tensor, _ store: ParameterStore) -> (Tensor, LayerCache) {
    let batch = x.batchSize
    if let conv = convolution(batch: batch) {
      let y = [Float](unsafeUninitializedCapacity: batch * outHeight * outWidth * filters) {
        out, initialized in
        x.storage.withUnsafeBufferPointer { xp in
          conv.forward(
            x: xp.baseAddress!, weights: store.value(at: affine.weightOffset),
            bias: store.value(at: affine.biasOffset),
            y: out.baseAddress!)
        }
        initialized = out.count
      }
      // The cache holds x itself (rank 4), where im2col's holds col (rank 2).
      return (
        Tensor(shape: [batch, outHeight, outWidth, filters], storage: y), LayerCache(tensors: [x])
      )
    }
    let rows = batch * outHeight * outWidth
    let col = im2col(x)
    let y = affine.forward(col, rows: rows, store)  // y[R, F] = col[R, K] · W[F, K]ᵀ + b
    let out = Tensor(shape: [batch, outHeight, outWidth, filters], storage: y)
    return (out, LayerCache(tensors: [Tensor(shape: [rows, patch], storage: col)]))
  }

  public func backward(
    _ dy: Tensor, _ cache: LayerCache, _ store: ParameterStore, inputGradient: Bool
  ) -> Tensor? {
    if cache.tensors[0].shape.count == 4, let conv = convolution(batch: dy.batchSize) {
      let x = cache.tensors[0]
      let dw = store.gradientToAdd(at: affine.weightOffset, count: filters * patch)
      let db = store.gradientToAdd(at: affine.biasOffset, count: filters)
      x.storage.withUnsafeBufferPointer { xp in
        dy.storage.withUnsafeBufferPointer { dyp in
          conv.backwardWeights(x: xp.baseAddress!, dy: dyp.baseAddress!, dw: dw, db: db)
        }
      }
      guard inputGradient else { return nil }
      let dx = [Float](unsafeUninitializedCapacity: x.count) { out, initialized in
        dy.storage.withUnsafeBufferPointer { dyp in
          conv.backwardData(
            dy: dyp.baseAddress!, weights: store.value(at: affine.weightOffset),
            dx: out.baseAddress!)
        }
        initialized = out.count
      }
      return Tensor(shape: x.shape, storage: dx)
    }
    let col = cache.tensors[0]
    let rows = col.shape[0]
    guard
      let dcol = affine.backward(
        dy.storage, col.storage, rows: rows, store, inputGradient: inputGradient)
    else {
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
        let d = dp.baseAddress!
        let x = xp.baseAddress!
        forEachPatchRun(batch: batch) { colOffset, inputOffset in
          guard let inputOffset else { return }
          for i in 0..<c { x[inputOffset + i] += d[colOffset + i] }
        }
      }
    }
    return Tensor(shape: [batch, height, width, channels], storage: dx)
  }
}

/// A layer's oneDNN primitives by shape and thread count (oneDNN fixes a primitive's split
/// over threads when it makes it: one made for 1 thread runs on 1 thread only), made on first
/// use; nil is remembered too (no fast kernel: im2col). A class so that the value-type layer
/// can fill it; the lock makes it safe to share, although a stage's layers run on one thread.
final class ConvolutionCache: @unchecked Sendable {
  private struct Key: Hashable {
    var shape: ConvolutionShape
    var threads: Int
  }
  private let lock = NSLock()
  private var entries: [Key: Convolution?] = [:]

  func get(_ shape: ConvolutionShape) -> Convolution? {
    let key = Key(shape: shape, threads: BLAS.threads)
    lock.lock()
    defer { lock.unlock() }
    if let known = entries[key] { return known }
    let made = Convolution(shape)
    entries[key] = .some(made)
    return made
  }
}
