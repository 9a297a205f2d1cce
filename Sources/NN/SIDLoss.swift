/// Synergistic Information Distillation's local objective on a stage's logits ℓ [B, C]:
/// L = α·CE(y, softmax ℓ) + (1 − α)·KL between the previous stage's belief p_prev [B, C]
/// (a constant) and softmax ℓ, in the chosen direction; CE may use label smoothing ε.
/// The gradient is the matching mix of the two gradients with respect to ℓ.
public func sidLoss(
  logits: Tensor, labels: [Int32], previousBelief: Tensor, alpha: Float,
  labelSmoothing: Float = 0, direction: KLDirection = .forward
) -> LossResult {
  let ce = softmaxCrossEntropy(logits: logits, labels: labels, labelSmoothing: labelSmoothing)
  let kl = klDivergence(target: previousBelief, logits: logits, direction: direction)
  var gradient = ce.gradient
  for i in 0..<gradient.count {
    gradient.storage[i] = alpha * ce.gradient.storage[i] + (1 - alpha) * kl.gradient.storage[i]
  }
  return LossResult(
    loss: alpha * ce.loss + (1 - alpha) * kl.loss, gradient: gradient, correct: ce.correct)
}

/// The belief a first stage distils from: uniform over `classes`.
public func uniformBelief(batch: Int, classes: Int) -> Tensor {
  Tensor(
    shape: [batch, classes], storage: [Float](repeating: 1 / Float(classes), count: batch * classes)
  )
}
