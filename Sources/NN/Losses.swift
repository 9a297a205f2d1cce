import Foundation

/// B = batch size, C = classes. Losses are means over the batch; each returns its value and
/// its gradient with respect to the logits.

/// Row-wise softmax of logits [B, C].
public func softmax(_ logits: Tensor) -> Tensor {
  let classes = logits.shape.last ?? 1
  var p = logits
  p.storage.withUnsafeMutableBufferPointer { buffer in
    for row in 0..<(buffer.count / classes) {
      let r = buffer.baseAddress! + row * classes
      var top = -Float.infinity
      for c in 0..<classes { top = max(top, r[c]) }
      var sum: Float = 0
      for c in 0..<classes {
        r[c] = expf(r[c] - top)
        sum += r[c]
      }
      for c in 0..<classes { r[c] /= sum }
    }
  }
  return p
}

/// The result of a classification loss on one batch.
public struct LossResult: Sendable {
  /// Mean loss over the batch.
  public var loss: Float
  /// ∂loss/∂logits [B, C].
  public var gradient: Tensor
  /// How many rows have their arg-max on the label (0 where no labels are involved).
  public var correct: Int

  public init(loss: Float, gradient: Tensor, correct: Int) {
    (self.loss, self.gradient, self.correct) = (loss, gradient, correct)
  }
}

/// Mean cross-entropy of softmax(logits) [B, C] against integer labels [B], with optional
/// label smoothing ε (target = (1 − ε)·onehot + ε/C).
///
/// ∂L/∂logits = (softmax(logits) − target) / B.
public func softmaxCrossEntropy(
  logits: Tensor, labels: [Int32], labelSmoothing: Float = 0
) -> LossResult {
  let classes = logits.shape.last ?? 1
  let batch = labels.count
  precondition(logits.count == batch * classes, "cross-entropy: logits and labels disagree")
  var p = softmax(logits)
  var loss: Double = 0
  var correct = 0
  let off = labelSmoothing / Float(classes)
  let on = 1 - labelSmoothing + off
  let scale = 1 / Float(batch)
  p.storage.withUnsafeMutableBufferPointer { buffer in
    for row in 0..<batch {
      let r = buffer.baseAddress! + row * classes
      let label = Int(labels[row])
      var best = 0
      for c in 0..<classes where r[c] > r[best] { best = c }
      if best == label { correct += 1 }
      for c in 0..<classes {
        let target = c == label ? on : off
        if target > 0 { loss -= Double(target) * log(Double(max(r[c], 1e-30))) }
        r[c] = (r[c] - target) * scale
      }
    }
  }
  return LossResult(loss: Float(loss / Double(batch)), gradient: p, correct: correct)
}

/// Which way a KL divergence between a fixed target belief p and the model's q is taken.
public enum KLDirection: String, Sendable, Codable, CaseIterable {
  /// KL(p ‖ q) = Σ p (log p − log q): the SID authors' code (target first, `batchmean`).
  case forward
  /// KL(q ‖ p) = Σ q (log q − log p): the SID paper's text.
  case reverse
}

/// Mean over the batch of a KL divergence between target distributions p [B, C] (constant)
/// and q = softmax(logits) [B, C].
///
/// forward: ∂/∂logits = (q − p) / B.
/// reverse: ∂/∂logits_j = q_j · (log q_j − log p_j − KL_row) / B.
/// Zero target entries count as 0·log 0 = 0 (forward); the reverse direction needs p > 0 and
/// floors it at 1e-12.
public func klDivergence(target: Tensor, logits: Tensor, direction: KLDirection = .forward)
  -> LossResult
{
  precondition(target.shape == logits.shape, "kl: target \(target.shape) vs logits \(logits.shape)")
  let classes = logits.shape.last ?? 1
  let batch = logits.count / classes
  var q = softmax(logits)
  var loss: Double = 0
  let scale = 1 / Float(batch)
  target.storage.withUnsafeBufferPointer { pp in
    q.storage.withUnsafeMutableBufferPointer { qp in
      for row in 0..<batch {
        let p = pp.baseAddress! + row * classes
        let r = qp.baseAddress! + row * classes
        switch direction {
        case .forward:
          for c in 0..<classes {
            if p[c] > 0 {
              loss += Double(p[c]) * (log(Double(p[c])) - log(Double(max(r[c], 1e-30))))
            }
            r[c] = (r[c] - p[c]) * scale
          }
        case .reverse:
          var rowKL: Double = 0
          var logRatio = [Double](repeating: 0, count: classes)
          for c in 0..<classes {
            logRatio[c] = log(Double(max(r[c], 1e-30))) - log(Double(max(p[c], 1e-12)))
            rowKL += Double(r[c]) * logRatio[c]
          }
          loss += rowKL
          for c in 0..<classes { r[c] = Float(Double(r[c]) * (logRatio[c] - rowKL)) * scale }
        }
      }
    }
  }
  return LossResult(loss: Float(loss / Double(batch)), gradient: q, correct: 0)
}
