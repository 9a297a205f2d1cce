import Foundation
import Testing

@testable import NN

/// Three steps on a fixed parameter against scripts/reference/optimizers.py.
@Suite("Optimizers against reference values")
struct OptimizerTests {
  /// A backward pass after an update overwrites the gradient; a second one adds to it; a
  /// parameter no backward reached enters the next update with a zero gradient, not a stale one.
  @Test func gradientsAreOverwrittenAfterAnUpdateAndAddedWithin() throws {
    var layout = ParameterLayout()
    let layer = Linear(name: "fc", inputs: 2, outputs: 1, layout: &layout)
    let unused = layout.add("unused", shape: [1])
    let store = ParameterStore(layout: layout)
    store.setValues([1, 2, 0, 5])
    var settings = OptimizerSettings()
    settings.momentum = 0
    var optimizer = Optimizer(settings)
    let x = Tensor(shape: [1, 2], storage: [3, 4])
    let dy = Tensor(shape: [1, 1], storage: [1])
    for i in 0..<3 { store.gradients[i] = 9 }
    store.gradients[unused] = 7  // as if from an earlier step
    optimizer.update(store, learningRate: 0)  // consumes every gradient
    _ = layer.backward(dy, layer.forward(x, store).1, store, inputGradient: false)
    let first: [Float] = [3, 4, 1]
    #expect(Array(store.gradients.prefix(3)) == first)  // overwritten, not added to what was there
    _ = layer.backward(dy, layer.forward(x, store).1, store, inputGradient: false)
    let second: [Float] = [6, 8, 2]
    #expect(Array(store.gradients.prefix(3)) == second)  // then added to
    optimizer.update(store, learningRate: 1)
    let expected: [Float] = [-5, -6, -2, 5]
    #expect(store.valueArray == expected)  // the unused parameter saw 0, not 7
  }

  static let grads: [[Float]] = [[0.1, -0.2, 0.3], [0.05, 0.4, -0.1], [-0.3, 0.2, 0.25]]

  func run(_ settings: OptimizerSettings) -> [Float] {
    var layout = ParameterLayout()
    _ = layout.add("w", shape: [3])
    let store = ParameterStore(layout: layout)
    store.setValues([0.5, -1.0, 2.0])
    var optimizer = Optimizer(settings)
    for g in Self.grads {
      store.zeroGradients()
      for i in 0..<3 { store.gradients[i] = g[i] }
      optimizer.update(store, learningRate: 0.1)
      #expect(store.accumulationTarget(at: 0).overwrite, "the next backward overwrites the consumed gradient")
    }
    return store.valueArray
  }

  func settings(_ kind: OptimizerKind, momentum: Float = 0, nesterov: Bool = false, weightDecay: Float = 0)
    -> OptimizerSettings
  {
    var s = OptimizerSettings()
    s.kind = kind
    s.momentum = momentum
    s.nesterov = nesterov
    s.weightDecay = weightDecay
    return s
  }

  @Test(arguments: [
    ("sgd", [0.51500000, -1.04000000, 1.95500000]),
    ("sgdMomentum", [0.49064039, -1.03623078, 1.90159357]),
    ("sgdNesterov", [0.50516341, -1.06964632, 1.86063244]),
    ("adam", [0.33901900, -0.98315439, 1.78499230]),
    ("adamw", [0.32957609, -0.96045733, 1.73906555]),
  ] as [(String, [Float])])
  func matchesReference(name: String, expected: [Float]) {
    let s: OptimizerSettings =
      switch name {
      case "sgd": settings(.sgd)
      case "sgdMomentum": settings(.sgd, momentum: 0.9, weightDecay: 0.01)
      case "sgdNesterov": settings(.sgd, momentum: 0.9, nesterov: true, weightDecay: 0.01)
      case "adam": settings(.adam, weightDecay: 0.01)
      default: settings(.adamw, weightDecay: 0.1)
      }
    let got = run(s)
    for (g, e) in zip(got, expected) { #expect(abs(g - e) < 1e-5, "\(name): \(got) vs \(expected)") }
  }
}

@Suite("Learning-rate schedules")
struct ScheduleTests {
  @Test func stepDecay() {
    var s = LearningRateSchedule()
    s.kind = .step
    s.stepEpochs = 2
    s.gamma = 0.5
    // 10 steps per epoch: epochs 0–1 at 1, 2–3 at 0.5, 4 at 0.25.
    #expect(s.rate(base: 1, step: 19, stepsPerEpoch: 10, totalEpochs: 5) == 1)
    #expect(s.rate(base: 1, step: 20, stepsPerEpoch: 10, totalEpochs: 5) == 0.5)
    #expect(s.rate(base: 1, step: 45, stepsPerEpoch: 10, totalEpochs: 5) == 0.25)
  }

  @Test func cosineDecay() {
    var s = LearningRateSchedule()
    s.kind = .cosine
    s.minimum = 0.1
    #expect(s.rate(base: 1, step: 0, stepsPerEpoch: 10, totalEpochs: 4) == 1)
    #expect(abs(s.rate(base: 1, step: 20, stepsPerEpoch: 10, totalEpochs: 4) - 0.55) < 1e-6)
    #expect(abs(s.rate(base: 1, step: 40, stepsPerEpoch: 10, totalEpochs: 4) - 0.1) < 1e-6)
  }

  @Test func warmupRampsLinearlyThenHandsOver() {
    var s = LearningRateSchedule()
    s.kind = .constant
    s.warmupEpochs = 1
    #expect(s.rate(base: 1, step: 0, stepsPerEpoch: 4, totalEpochs: 3) == 0.25)
    #expect(s.rate(base: 1, step: 3, stepsPerEpoch: 4, totalEpochs: 3) == 1)
    #expect(s.rate(base: 1, step: 9, stepsPerEpoch: 4, totalEpochs: 3) == 1)
  }
}

@Suite("Seeded generator")
struct SeededGeneratorTests {
  @Test func sameSeedSameStreamAndStreamsDiffer() {
    var a = SeededGenerator(seed: 42, stream: 1)
    var b = SeededGenerator(seed: 42, stream: 1)
    var c = SeededGenerator(seed: 42, stream: 2)
    let xs = (0..<5).map { _ in a.next() }
    #expect(xs == (0..<5).map { _ in b.next() })
    #expect(xs != (0..<5).map { _ in c.next() })
  }

  @Test func normalDrawsHaveUnitVariance() {
    var rng = SeededGenerator(seed: 9)
    let draws = (0..<20_000).map { _ in rng.nextNormal() }
    let mean = draws.reduce(0, +) / Double(draws.count)
    let variance = draws.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(draws.count)
    #expect(abs(mean) < 0.03 && abs(variance - 1) < 0.05)
  }
}

@Suite("Optimizer groups")
struct OptimizerGroupTests {
  /// A group's rate factor scales its step under every rule — under Adam too, where scaling
  /// its gradient would change nothing — and leaves the other groups' steps as they were.
  @Test(arguments: [OptimizerKind.sgd, .adam, .adamw])
  func groupRatesScaleTheirGroupsStep(kind: OptimizerKind) {
    func steps(headScale: Float?) -> [Float] {
      var layout = ParameterLayout()
      _ = layout.add("body.0.weight", shape: [3])
      _ = layout.add("head.fc.weight", shape: [2])
      _ = layout.add("body.1.bias", shape: [1])
      let store = ParameterStore(layout: layout)
      let start: [Float] = [0.5, -1, 2, 0.3, -0.7, 0.1]
      store.setValues(start)
      var settings = OptimizerSettings()
      (settings.kind, settings.momentum) = (kind, 0.9)
      if let headScale { settings.rateScales = ["head": headScale] }
      var optimizer = Optimizer(settings)
      for g in [[Float](arrayLiteral: 0.1, -0.2, 0.3, 0.4, -0.5, 0.05), [0.05, 0.4, -0.1, -0.2, 0.3, 0.1]] {
        store.zeroGradients()
        for i in 0..<6 { store.gradients[i] = g[i] }
        optimizer.update(store, learningRate: 0.1)
      }
      return zip(store.valueArray, start).map { $0 - $1 }
    }
    let plain = steps(headScale: nil), scaled = steps(headScale: 0.25)
    for i in [0, 1, 2, 5] { #expect(scaled[i] == plain[i], "body [\(i)]") }
    for i in [3, 4] { #expect(abs(scaled[i] - 0.25 * plain[i]) <= 1e-5 * abs(plain[i]), "head [\(i)]: \(scaled[i]) against \(plain[i])") }
  }

  /// Adam and AdamW over 37 values — two 16-lane blocks and a scalar tail — against the rule
  /// written out in Double, three steps.
  @Test(arguments: [OptimizerKind.adam, .adamw])
  func adamInLanesFollowsTheRule(kind: OptimizerKind) {
    var layout = ParameterLayout()
    _ = layout.add("body.w", shape: [37])
    let store = ParameterStore(layout: layout)
    var rng = SeededGenerator(seed: 8)
    let start = (0..<37).map { _ in Float(rng.nextNormal()) }
    store.setValues(start)
    var settings = OptimizerSettings()
    (settings.kind, settings.weightDecay) = (kind, 0.01)
    var optimizer = Optimizer(settings)
    var (w, m, v) = (start.map(Double.init), [Double](repeating: 0, count: 37), [Double](repeating: 0, count: 37))
    let lr = 0.01
    for t in 1...3 {
      let g = (0..<37).map { _ in Float(rng.nextNormal()) }
      store.zeroGradients()
      for i in 0..<37 { store.gradients[i] = g[i] }
      optimizer.update(store, learningRate: Float(lr))
      for i in 0..<37 {
        let grad = Double(g[i]) + (kind == .adam ? 0.01 * w[i] : 0)
        m[i] = 0.9 * m[i] + 0.1 * grad
        v[i] = 0.999 * v[i] + 0.001 * grad * grad
        if kind == .adamw { w[i] -= lr * 0.01 * w[i] }
        w[i] -= lr * (m[i] / (1 - pow(0.9, Double(t)))) / ((v[i] / (1 - pow(0.999, Double(t)))).squareRoot() + 1e-8)
      }
    }
    for i in 0..<37 {
      #expect(abs(Double(store.values[i]) - w[i]) <= 1e-6 * max(1, abs(w[i])), "[\(i)] \(store.values[i]) against \(w[i])")
    }
  }
}
