import Foundation

/// Which update rule an optimizer applies.
public enum OptimizerKind: String, Sendable, Codable, CaseIterable {
  /// SGD with optional momentum, Nesterov momentum and L2 weight decay (PyTorch's rule).
  case sgd
  /// Adam with L2 weight decay added to the gradient.
  case adam
  /// Adam with decoupled weight decay (Loshchilov & Hutter).
  case adamw
}

/// The hyper-parameters of an update rule; the rate itself comes with each update.
public struct OptimizerSettings: Sendable, Equatable {
  public var kind: OptimizerKind = .sgd
  public var momentum: Float = 0.9
  public var nesterov: Bool = false
  public var weightDecay: Float = 0
  public var beta1: Float = 0.9
  public var beta2: Float = 0.999
  public var epsilon: Float = 1e-8
  /// Per parameter group, a factor on the learning rate: a parameter's group is its name's
  /// first part (`body`, `head`, `context` — ContSup's encoders). Groups not named step at
  /// the rate itself. A factor on the rate, not on the gradient: Adam undoes gradient scales.
  public var rateScales: [String: Float] = [:]
  public init() {}

  /// The group of the parameter called `name`.
  public static func group(of name: String) -> String { String(name.prefix { $0 != "." }) }
}

/// Applies one update to every value of a `ParameterStore` from its gradients, then marks the
/// gradients stale, so the next backward pass overwrites them (no pass of zeros).
public struct Optimizer: Sendable {
  public let settings: OptimizerSettings
  /// Updates applied so far (Adam's bias correction uses it; checkpoints keep it).
  public var stepCount = 0

  public init(_ settings: OptimizerSettings) { self.settings = settings }

  public mutating func update(_ store: ParameterStore, learningRate: Float) {
    stepCount += 1
    store.clearStaleGradients()
    defer { store.markGradientsStale() }
    for (range, scale) in segments(store.layout) {
      step(store, range, learningRate: learningRate * scale)
    }
  }

  /// The store's trainable parameters as runs of one rate factor each (the whole store when no
  /// group has a factor of its own and nothing is state).
  func segments(_ layout: ParameterLayout) -> [(Range<Int>, Float)] {
    guard !settings.rateScales.isEmpty || layout.specs.contains(where: { !$0.trainable }) else {
      return [(0..<layout.count, 1)]
    }
    var runs: [(Range<Int>, Float)] = []
    for spec in layout.specs where spec.trainable {
      let scale = settings.rateScales[OptimizerSettings.group(of: spec.name)] ?? 1
      if let last = runs.last, last.1 == scale, last.0.upperBound == spec.offset {
        runs[runs.count - 1].0 = last.0.lowerBound..<(spec.offset + spec.count)
      } else {
        runs.append((spec.offset..<(spec.offset + spec.count), scale))
      }
    }
    return runs
  }

  /// One update of the values in `range` at rate `lr`.
  private func step(_ store: ParameterStore, _ range: Range<Int>, learningRate lr: Float) {
    let n = range.count
    guard n > 0 else { return }
    let w = store.values.baseAddress! + range.lowerBound
    let g = store.gradients.baseAddress! + range.lowerBound
    let s = settings
    switch s.kind {
    case .sgd:
      if s.momentum == 0 {
        for i in 0..<n { w[i] -= lr * (g[i] + s.weightDecay * w[i]) }
        return
      }
      // v = μv + (g + λw); step = nesterov ? (g + λw) + μv : v
      let v = store.slot("momentum").baseAddress! + range.lowerBound
      let (mu, decay) = (s.momentum, s.weightDecay)
      if s.nesterov {
        for i in 0..<n {
          let grad = g[i] + decay * w[i]
          v[i] = mu * v[i] + grad
          w[i] -= lr * (grad + mu * v[i])
        }
      } else {
        for i in 0..<n {
          v[i] = mu * v[i] + g[i] + decay * w[i]
          w[i] -= lr * v[i]
        }
      }
    case .adam, .adamw:
      let m = store.slot("adam.m").baseAddress! + range.lowerBound
      let v = store.slot("adam.v").baseAddress! + range.lowerBound
      let t = Float(stepCount)
      let c1 = 1 - powf(s.beta1, t)
      let c2 = 1 - powf(s.beta2, t)
      let l2: Float = s.kind == .adam ? s.weightDecay : 0
      let decoupled: Float = s.kind == .adamw ? lr * s.weightDecay : 0
      // Sixteen lanes at a time (the compiler cannot prove the four buffers apart, so it
      // would not vectorise the loop itself); the same arithmetic per lane as the tail's.
      typealias Lanes = SIMD16<Float>
      func load(_ p: UnsafeMutablePointer<Float>, _ i: Int) -> Lanes {
        Lanes(UnsafeBufferPointer(start: p + i, count: 16))
      }
      func put(_ x: Lanes, _ p: UnsafeMutablePointer<Float>, _ i: Int) {
        UnsafeMutableRawPointer(p + i).storeBytes(of: x, as: Lanes.self)
      }
      var i = 0
      while i + 16 <= n {
        let wi = load(w, i)
        let grad = load(g, i) + l2 * wi
        let mi = s.beta1 * load(m, i) + (1 - s.beta1) * grad
        let vi = s.beta2 * load(v, i) + (1 - s.beta2) * grad * grad
        let decayed = wi - decoupled * wi
        put(mi, m, i)
        put(vi, v, i)
        put(decayed - lr * (mi / c1) / ((vi / c2).squareRoot() + s.epsilon), w, i)
        i += 16
      }
      for i in i..<n {
        let grad = g[i] + l2 * w[i]
        m[i] = s.beta1 * m[i] + (1 - s.beta1) * grad
        v[i] = s.beta2 * v[i] + (1 - s.beta2) * grad * grad
        w[i] -= decoupled * w[i]
        w[i] -= lr * (m[i] / c1) / ((v[i] / c2).squareRoot() + s.epsilon)
      }
    }
  }
}
