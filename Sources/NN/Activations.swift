import Foundation
import Linalg

/// y = max(0, x), elementwise; backward passes dy where y > 0.
public struct ReLU: Layer {
  public let outputShape: [Int]
  public init(shape: [Int]) { outputShape = shape }
  public var summary: String { "relu" }

  public func forward(_ x: Tensor, _ store: ParameterStore) -> (Tensor, LayerCache) {
    // Branch-free selects on raw pointers, so the compiler vectorises them; split over threads.
    let y = [Float](unsafeUninitializedCapacity: x.count) { out, initialized in
      x.storage.withUnsafeBufferPointer { p in
        let (src, dst) = (SharedPointer(p.baseAddress!), SharedPointer(out.baseAddress!))
        ComputeThreads.chunks(p.count) { range in
          for i in range { dst[i] = src[i] > 0 ? src[i] : 0 }
        }
      }
      initialized = x.count
    }
    let output = Tensor(shape: x.shape, storage: y)
    return (output, LayerCache(tensors: [output]))
  }

  public func backward(
    _ dy: Tensor, _ cache: LayerCache, _ store: ParameterStore, inputGradient: Bool
  ) -> Tensor? {
    guard inputGradient else { return nil }
    let dx = [Float](unsafeUninitializedCapacity: dy.count) { out, initialized in
      cache.tensors[0].storage.withUnsafeBufferPointer { y in
        dy.storage.withUnsafeBufferPointer { d in
          let (yp, dp, dst) = (
            SharedPointer(y.baseAddress!), SharedPointer(d.baseAddress!),
            SharedPointer(out.baseAddress!)
          )
          ComputeThreads.chunks(d.count) { range in
            var i = range.lowerBound
            while i + 16 <= range.upperBound {  // 16 lanes at a time
              var g = SIMD16<Float>(UnsafeBufferPointer(start: dp.base + i, count: 16))
              g.replace(
                with: 0,
                where: SIMD16<Float>(UnsafeBufferPointer(start: yp.base + i, count: 16)) .<= 0)
              UnsafeMutableRawPointer(dst.base + i).storeBytes(of: g, as: SIMD16<Float>.self)
              i += 16
            }
            for i in i..<range.upperBound { dst[i] = yp[i] > 0 ? dp[i] : 0 }
          }
        }
      }
      initialized = dy.count
    }
    return Tensor(shape: dy.shape, storage: dx)
  }
}

/// y = tanh(x), elementwise; backward: dx = dy · (1 − y²). Bounded, which DRTP needs: its
/// projected targets never shrink, and ReLU outputs would grow without limit.
///
/// Shapes: x, y, dy, dx [B, …] alike.
public struct Tanh: Layer {
  public let outputShape: [Int]
  public init(shape: [Int]) { outputShape = shape }
  public var summary: String { "tanh" }

  public func forward(_ x: Tensor, _ store: ParameterStore) -> (Tensor, LayerCache) {
    let output = Tensor(shape: x.shape, storage: x.storage.map { Foundation.tanh($0) })
    return (output, LayerCache(tensors: [output]))
  }

  public func backward(
    _ dy: Tensor, _ cache: LayerCache, _ store: ParameterStore, inputGradient: Bool
  ) -> Tensor? {
    guard inputGradient else { return nil }
    let y = cache.tensors[0].storage
    return Tensor(
      shape: dy.shape, storage: (0..<dy.count).map { dy.storage[$0] * (1 - y[$0] * y[$0]) })
  }
}

/// Reshapes [B, …] to [B, n]; no arithmetic.
public struct Flatten: Layer {
  public let inputShape: [Int]
  public init(inputShape: [Int]) { self.inputShape = inputShape }
  public var summary: String { "flatten" }
  public var outputShape: [Int] { [inputShape.reduce(1, *)] }

  public func forward(_ x: Tensor, _ store: ParameterStore) -> (Tensor, LayerCache) {
    (x.reshaped([x.batchSize] + outputShape), LayerCache())
  }

  public func backward(
    _ dy: Tensor, _ cache: LayerCache, _ store: ParameterStore, inputGradient: Bool
  ) -> Tensor? {
    inputGradient ? dy.reshaped([dy.batchSize] + inputShape) : nil
  }
}
