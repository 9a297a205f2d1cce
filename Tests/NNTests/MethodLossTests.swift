import Foundation
import Testing

@testable import NN

@Suite("Kernel alignment and SID losses")
struct MethodLossTests {
  func check(_ x: Tensor, step: Float = 1e-3, _ f: (Tensor) -> LossResult, sourceLocation: SourceLocation = #_sourceLocation) {
    GradientCheck.checkLoss(x, step: step, sourceLocation: sourceLocation, f)
  }

  func positive(_ shape: [Int], seed: UInt64) -> Tensor {
    var rng = SeededGenerator(seed: seed)
    return Tensor(shape: shape, storage: (0..<shape.reduce(1, *)).map { _ in Float(0.2 + rng.nextUnit()) })
  }

  @Test func kernelLossByHand() {
    // Two same-class rows pointing the same way and a third orthogonal, other class: the
    // Gram matrix equals the ideal kernel, so the loss is −1 exactly.
    let h = Tensor(shape: [3, 2], storage: [1, 0, 2, 0, 0, 3])
    let result = kernelAlignmentLoss(features: h, labels: [4, 4, 7])
    #expect(abs(result.loss + 1) < 1e-6)
    #expect(result.gradient.storage.allSatisfy { abs($0) < 1e-5 })
    // u(G) = (0.6, 0.8, 0) against u(G*) = (1, 0, 0): cos = 0.6.
    let tilted = Tensor(shape: [3, 2], storage: [1, 0, 0.6, 0.8, 0, 1])
    #expect(abs(kernelAlignmentLoss(features: tilted, labels: [1, 1, 2]).loss + 0.6) < 1e-6)
  }

  @Test func kernelLossGradient() {
    let labels: [Int32] = [0, 1, 0, 2, 1, 0]
    check(positive([6, 5], seed: 4)) { kernelAlignmentLoss(features: $0, labels: labels) }
  }

  @Test func rowNormalizeGradient() {
    var rng = SeededGenerator(seed: 8)
    let r = GradientCheck.random([3, 4], &rng)
    check(positive([3, 4], seed: 9)) { h in
      let (phi, norms) = rowNormalize(h)
      let loss = zip(phi.storage, r.storage).reduce(Float(0)) { $0 + $1.0 * $1.1 }
      return LossResult(loss: loss, gradient: rowNormalizeBackward(r, phi: phi, norms: norms), correct: 0)
    }
  }

  @Test func kernelLossNeedsBothKindsOfPairs() {
    #expect(!kernelAlignmentIsDefined(labels: [3, 3, 3]))
    #expect(!kernelAlignmentIsDefined(labels: [1, 2, 3]))
    #expect(kernelAlignmentIsDefined(labels: [1, 2, 1]))
  }

  @Test func sidLossByHand() {
    // Logits [0, ln 3]: q = [1/4, 3/4]; label 1; uniform previous belief; α = 0.5, forward KL.
    let logits = Tensor(shape: [1, 2], storage: [0, Float(log(3.0))])
    let result = sidLoss(logits: logits, labels: [1], previousBelief: uniformBelief(batch: 1, classes: 2), alpha: 0.5)
    let ce = -log(0.75), kl = 0.5 * log(0.5 / 0.25) + 0.5 * log(0.5 / 0.75)
    #expect(abs(Double(result.loss) - (0.5 * ce + 0.5 * kl)) < 1e-6)
    #expect(result.correct == 1)
  }

  @Test(arguments: KLDirection.allCases)
  func sidLossGradient(direction: KLDirection) {
    let belief = softmax(positive([3, 4], seed: 2))
    check(positive([3, 4], seed: 3), step: 1e-2) {
      sidLoss(logits: $0, labels: [0, 3, 1], previousBelief: belief, alpha: 0.3, labelSmoothing: 0.1, direction: direction)
    }
  }

  /// The minimiser of SID's objective is α·y + (1 − α)·p_prev (forward KL, no smoothing):
  /// there the gradient vanishes.
  @Test func sidMinimiserIsTheMixture() {
    let previous = Tensor(shape: [1, 3], storage: [0.2, 0.5, 0.3])
    let alpha: Float = 0.4
    let target: [Float] = [0.4 + 0.6 * 0.2, 0.6 * 0.5, 0.6 * 0.3]  // label 0
    let logits = Tensor(shape: [1, 3], storage: target.map { Float(log(Double($0))) })
    let result = sidLoss(logits: logits, labels: [0], previousBelief: previous, alpha: alpha)
    #expect(result.gradient.storage.allSatisfy { abs($0) < 1e-6 })
  }
}
