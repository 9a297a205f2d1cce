/// Batch normalisation over the last (channel) dimension: per channel c, over the N = B·H·W
/// values of a batch (B for vectors),
///
///     μ_c = mean(x_c)   σ²_c = mean((x_c − μ_c)²)   x̂ = (x − μ_c) / √(σ²_c + ε)   y = γ_c x̂ +
/// β_c
///
/// In training (`forward`) it normalises with the batch's statistics and moves the running ones
/// towards them (r ← (1 − m) r + m s, the variance unbiased: N/(N − 1) σ², as PyTorch does);
/// in evaluation (`infer`) it normalises with the running ones. The running statistics are
/// state, not parameters: they live in the store (so checkpoints keep them) but no optimizer
/// touches them. Under GPipe each micro-batch is its own batch here.
///
/// Shapes: x, y, dy, dx [B, C] or [B, H, W, C] (NHWC); γ, β, running mean and variance [C].
public struct BatchNorm: Layer {
  public let outputShape: [Int]
  public let channels: Int
  public let momentum: Float
  public let epsilon: Float
  let gamma: Int, beta: Int, runningMean: Int, runningVariance: Int

  public init(
    name: String, shape: [Int], momentum: Float = 0.1, epsilon: Float = 1e-5,
    layout: inout ParameterLayout
  ) {
    outputShape = shape
    channels = shape.last!
    (self.momentum, self.epsilon) = (momentum, epsilon)
    gamma = layout.add("\(name).weight", shape: [channels])
    beta = layout.add("\(name).bias", shape: [channels])
    runningMean = layout.add("\(name).running_mean", shape: [channels], trainable: false)
    runningVariance = layout.add("\(name).running_var", shape: [channels], trainable: false)
  }

  public var summary: String { "batchnorm \(channels)" }
  public var forwardFLOPsPerSample: Int { 4 * outputShape.reduce(1, *) }

  /// γ = 1, β = 0; running mean 0, running variance 1.
  public func initialize(_ store: ParameterStore, _ rng: inout SeededGenerator) {
    store.value(at: gamma).update(repeating: 1, count: channels)
    store.value(at: beta).update(repeating: 0, count: channels)
    store.value(at: runningMean).update(repeating: 0, count: channels)
    store.value(at: runningVariance).update(repeating: 1, count: channels)
  }

  /// Training: the batch's statistics; caches x̂ [N, C] and 1/√(σ² + ε) [C].
  public func forward(_ x: Tensor, _ store: ParameterStore) -> (Tensor, LayerCache) {
    let c = channels
    let n = x.count / c
    var mean = [Float](repeating: 0, count: c)
    var variance = [Float](repeating: 0, count: c)
    var normalised = Tensor(zeros: x.shape)
    var y = Tensor(zeros: x.shape)
    let (g, b) = (store.value(at: gamma), store.value(at: beta))
    // Raw pointers in the loops: with array indexing (bounds checks, uniqueness checks) these
    // passes were a third of model C's time.
    x.storage.withUnsafeBufferPointer { xp in
      mean.withUnsafeMutableBufferPointer { mu in
        variance.withUnsafeMutableBufferPointer { va in
          for i in 0..<n { for j in 0..<c { mu[j] += xp[i * c + j] } }
          for j in 0..<c { mu[j] /= Float(n) }
          for i in 0..<n {
            for j in 0..<c {
              let d = xp[i * c + j] - mu[j]
              va[j] += d * d
            }
          }
          for j in 0..<c { va[j] /= Float(n) }
        }
      }
    }
    let invStd = variance.map { 1 / ($0 + epsilon).squareRoot() }
    x.storage.withUnsafeBufferPointer { xp in
      normalised.storage.withUnsafeMutableBufferPointer { xh in
        y.storage.withUnsafeMutableBufferPointer { yp in
          mean.withUnsafeBufferPointer { mu in
            invStd.withUnsafeBufferPointer { inv in
              for i in 0..<n {
                for j in 0..<c {
                  let k = i * c + j
                  let v = (xp[k] - mu[j]) * inv[j]
                  xh[k] = v
                  yp[k] = g[j] * v + b[j]
                }
              }
            }
          }
        }
      }
    }
    let (rm, rv) = (store.value(at: runningMean), store.value(at: runningVariance))
    let unbiased = n > 1 ? Float(n) / Float(n - 1) : 1
    for j in 0..<c {
      rm[j] = (1 - momentum) * rm[j] + momentum * mean[j]
      rv[j] = (1 - momentum) * rv[j] + momentum * variance[j] * unbiased
    }
    return (y, LayerCache(tensors: [normalised, Tensor(shape: [c], storage: invStd)]))
  }

  /// Evaluation: y = γ (x − running mean) / √(running variance + ε) + β; nothing changes.
  public func infer(_ x: Tensor, _ store: ParameterStore) -> Tensor {
    let c = channels
    let n = x.count / c
    let (g, b) = (store.value(at: gamma), store.value(at: beta))
    let (rm, rv) = (store.value(at: runningMean), store.value(at: runningVariance))
    let scale = (0..<c).map { g[$0] / (rv[$0] + epsilon).squareRoot() }
    let shift = (0..<c).map { b[$0] - rm[$0] * scale[$0] }
    var y = Tensor(zeros: x.shape)
    x.storage.withUnsafeBufferPointer { xp in
      y.storage.withUnsafeMutableBufferPointer { yp in
        scale.withUnsafeBufferPointer { sc in
          shift.withUnsafeBufferPointer { sh in
            for i in 0..<n { for j in 0..<c { yp[i * c + j] = xp[i * c + j] * sc[j] + sh[j] } }
          }
        }
      }
    }
    return y
  }

  /// dβ = Σ dy, dγ = Σ dy x̂, dx = γ/√(σ² + ε) · (dy − mean(dy) − x̂ mean(dy x̂)), per channel.
  public func backward(
    _ dy: Tensor, _ cache: LayerCache, _ store: ParameterStore, inputGradient: Bool
  ) -> Tensor? {
    let c = channels
    let n = dy.count / c
    let (normalised, invStd) = (cache.tensors[0], cache.tensors[1])
    var sumDy = [Float](repeating: 0, count: c)
    var sumDyXh = [Float](repeating: 0, count: c)
    dy.storage.withUnsafeBufferPointer { d in
      normalised.storage.withUnsafeBufferPointer { xh in
        sumDy.withUnsafeMutableBufferPointer { s1 in
          sumDyXh.withUnsafeMutableBufferPointer { s2 in
            for i in 0..<n {
              for j in 0..<c {
                s1[j] += d[i * c + j]
                s2[j] += d[i * c + j] * xh[i * c + j]
              }
            }
          }
        }
      }
    }
    let dGamma = store.gradientToAdd(at: gamma, count: c)
    let dBeta = store.gradientToAdd(at: beta, count: c)
    for j in 0..<c {
      dGamma[j] += sumDyXh[j]
      dBeta[j] += sumDy[j]
    }
    guard inputGradient else { return nil }
    let g = store.value(at: gamma)
    let count = Float(n)
    // dx = a_j (dy − m1_j − x̂ m2_j) with a_j = γ_j / σ_j, m1 = mean(dy), m2 = mean(dy x̂).
    let a = (0..<c).map { g[$0] * invStd.storage[$0] }
    let (m1, m2) = (sumDy.map { $0 / count }, sumDyXh.map { $0 / count })
    var dx = Tensor(zeros: dy.shape)
    dy.storage.withUnsafeBufferPointer { d in
      normalised.storage.withUnsafeBufferPointer { xh in
        dx.storage.withUnsafeMutableBufferPointer { out in
          a.withUnsafeBufferPointer { ap in
            m1.withUnsafeBufferPointer { p1 in
              m2.withUnsafeBufferPointer { p2 in
                for i in 0..<n {
                  for j in 0..<c {
                    let k = i * c + j
                    out[k] = ap[j] * (d[k] - p1[j] - xh[k] * p2[j])
                  }
                }
              }
            }
          }
        }
      }
    }
    return dx
  }
}
