import Foundation
import Testing

@testable import NN

@Suite("Losses: values by hand, gradients by central differences")
struct LossGradientTests {
  func checkLogitGradient(_ logits: Tensor, sourceLocation: SourceLocation = #_sourceLocation, _ loss: (Tensor) -> LossResult) {
    GradientCheck.checkLoss(logits, sourceLocation: sourceLocation, loss)
  }

  func randomLogits(_ batch: Int, _ classes: Int, seed: UInt64) -> Tensor {
    var rng = SeededGenerator(seed: seed)
    return GradientCheck.random([batch, classes], &rng, scale: 2)
  }

  func randomBelief(_ batch: Int, _ classes: Int, seed: UInt64) -> Tensor {
    softmax(randomLogits(batch, classes, seed: seed))
  }

  @Test func crossEntropyByHand() {
    // Two classes, logits [0, ln 3]: softmax = [1/4, 3/4]; label 1 → loss −ln(3/4).
    let logits = Tensor(shape: [1, 2], storage: [0, Float(log(3.0))])
    let result = softmaxCrossEntropy(logits: logits, labels: [1])
    #expect(abs(result.loss - Float(-log(0.75))) < 1e-6)
    #expect(result.correct == 1)
    #expect(abs(result.gradient.storage[0] - 0.25) < 1e-6)
    #expect(abs(result.gradient.storage[1] - -0.25) < 1e-6)
  }

  @Test func crossEntropyWithLabelSmoothingByHand() {
    // ε = 0.2, C = 2: target [0.1, 0.9]; q = [1/4, 3/4].
    let logits = Tensor(shape: [1, 2], storage: [0, Float(log(3.0))])
    let result = softmaxCrossEntropy(logits: logits, labels: [1], labelSmoothing: 0.2)
    let expected = -(0.1 * log(0.25) + 0.9 * log(0.75))
    #expect(abs(Double(result.loss) - expected) < 1e-6)
  }

  @Test(arguments: [Float(0), 0.1])
  func crossEntropyGradient(smoothing: Float) {
    let labels: [Int32] = [0, 3, 2, 1]
    checkLogitGradient(randomLogits(4, 5, seed: 2)) {
      softmaxCrossEntropy(logits: $0, labels: labels, labelSmoothing: smoothing)
    }
  }

  @Test func klByHand() {
    // p = [0.5, 0.5], q = [1/4, 3/4]: forward KL(p‖q) = 0.5 ln 2 + 0.5 ln(2/3);
    // reverse KL(q‖p) = 0.25 ln 0.5 + 0.75 ln 1.5.
    let p = Tensor(shape: [1, 2], storage: [0.5, 0.5])
    let logits = Tensor(shape: [1, 2], storage: [0, Float(log(3.0))])
    let forward = klDivergence(target: p, logits: logits, direction: .forward)
    let reverse = klDivergence(target: p, logits: logits, direction: .reverse)
    #expect(abs(Double(forward.loss) - (0.5 * log(2.0) + 0.5 * log(2.0 / 3))) < 1e-6)
    #expect(abs(Double(reverse.loss) - (0.25 * log(0.5) + 0.75 * log(1.5))) < 1e-6)
  }

  @Test func klOfADistributionWithItselfIsZero() {
    let logits = randomLogits(3, 4, seed: 5)
    let result = klDivergence(target: softmax(logits), logits: logits)
    #expect(abs(result.loss) < 1e-6)
    #expect(result.gradient.storage.allSatisfy { abs($0) < 1e-6 })
  }

  @Test(arguments: KLDirection.allCases)
  func klGradient(direction: KLDirection) {
    let target = randomBelief(3, 4, seed: 7)
    checkLogitGradient(randomLogits(3, 4, seed: 8)) {
      klDivergence(target: target, logits: $0, direction: direction)
    }
  }

  @Test func softmaxIsStableForLargeLogits() {
    let p = softmax(Tensor(shape: [1, 3], storage: [1000, 1000, -1000]))
    #expect(abs(p.storage[0] - 0.5) < 1e-6 && p.storage[2] == 0)
  }
}
