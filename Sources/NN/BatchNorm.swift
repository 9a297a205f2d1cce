/// Batch normalisation over the last (channel) dimension: per channel c, over the N = B·H·W
/// values of a batch (B for vectors),
///
///     μ_c = mean(x_c)   σ²_c = mean((x_c − μ_c)²)   x̂ = (x − μ_c) / √(σ²_c + ε)   y = γ_c x̂ + β_c
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

  public init(name: String, shape: [Int], momentum: Float = 0.1, epsilon: Float = 1e-5, layout: inout ParameterLayout) {
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
    let c = channels, n = x.count / c
    var mean = [Float](repeating: 0, count: c), variance = [Float](repeating: 0, count: c)
    for i in 0..<n { for j in 0..<c { mean[j] += x.storage[i * c + j] } }
    for j in 0..<c { mean[j] /= Float(n) }
    for i in 0..<n {
      for j in 0..<c {
        let d = x.storage[i * c + j] - mean[j]
        variance[j] += d * d
      }
    }
    for j in 0..<c { variance[j] /= Float(n) }
    let invStd = variance.map { 1 / ($0 + epsilon).squareRoot() }
    var normalised = Tensor(zeros: x.shape)
    var y = Tensor(zeros: x.shape)
    let (g, b) = (store.value(at: gamma), store.value(at: beta))
    for i in 0..<n {
      for j in 0..<c {
        let xh = (x.storage[i * c + j] - mean[j]) * invStd[j]
        normalised.storage[i * c + j] = xh
        y.storage[i * c + j] = g[j] * xh + b[j]
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
    let c = channels, n = x.count / c
    let (g, b) = (store.value(at: gamma), store.value(at: beta))
    let (rm, rv) = (store.value(at: runningMean), store.value(at: runningVariance))
    let scale = (0..<c).map { g[$0] / (rv[$0] + epsilon).squareRoot() }
    var y = Tensor(zeros: x.shape)
    for i in 0..<n {
      for j in 0..<c { y.storage[i * c + j] = (x.storage[i * c + j] - rm[j]) * scale[j] + b[j] }
    }
    return y
  }

  /// dβ = Σ dy, dγ = Σ dy x̂, dx = γ/√(σ² + ε) · (dy − mean(dy) − x̂ mean(dy x̂)), per channel.
  public func backward(_ dy: Tensor, _ cache: LayerCache, _ store: ParameterStore, inputGradient: Bool) -> Tensor? {
    let c = channels, n = dy.count / c
    let (normalised, invStd) = (cache.tensors[0], cache.tensors[1])
    var sumDy = [Float](repeating: 0, count: c), sumDyXh = [Float](repeating: 0, count: c)
    for i in 0..<n {
      for j in 0..<c {
        let d = dy.storage[i * c + j]
        sumDy[j] += d
        sumDyXh[j] += d * normalised.storage[i * c + j]
      }
    }
    let dGamma = store.gradientToAdd(at: gamma, count: c), dBeta = store.gradientToAdd(at: beta, count: c)
    for j in 0..<c {
      dGamma[j] += sumDyXh[j]
      dBeta[j] += sumDy[j]
    }
    guard inputGradient else { return nil }
    let g = store.value(at: gamma)
    var dx = Tensor(zeros: dy.shape)
    let count = Float(n)
    for i in 0..<n {
      for j in 0..<c {
        let k = i * c + j
        dx.storage[k] = g[j] * invStd.storage[j] * (dy.storage[k] - sumDy[j] / count - normalised.storage[k] * sumDyXh[j] / count)
      }
    }
    return dx
  }
}
