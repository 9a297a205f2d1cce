import Foundation
import Linalg

/// B = batch size, D = features. The proxy objective of Duan & Principe's modular training:
/// features are row-normalised, φ_i = h_i / ‖h_i‖ (h is already ReLU'd by the stage), their
/// in-batch Gram matrix G = ΦΦᵀ is aligned with the ideal kernel G*_ij = [y_i = y_j], and
/// the loss is −cos(u(G), u(G*)) over the strict upper triangle.

/// φ = h / ‖h‖ row by row (a zero row stays zero). Returns φ and the row norms.
public func rowNormalize(_ h: Tensor) -> (Tensor, norms: [Float]) {
  let d = h.sampleCount
  let b = h.batchSize
  var phi = h
  var norms = [Float](repeating: 0, count: b)
  phi.storage.withUnsafeMutableBufferPointer { p in
    for i in 0..<b {
      let row = p.baseAddress! + i * d
      var sum: Float = 0
      for j in 0..<d { sum += row[j] * row[j] }
      norms[i] = sum.squareRoot()
      let scale: Float = norms[i] > 0 ? 1 / norms[i] : 0
      for j in 0..<d { row[j] *= scale }
    }
  }
  return (phi, norms)
}

/// ∂L/∂h from ∂L/∂φ: dh_i = (dφ_i − φ_i ⟨φ_i, dφ_i⟩) / ‖h_i‖.
public func rowNormalizeBackward(_ dphi: Tensor, phi: Tensor, norms: [Float]) -> Tensor {
  let d = phi.sampleCount
  var dh = dphi
  dh.storage.withUnsafeMutableBufferPointer { g in
    phi.storage.withUnsafeBufferPointer { p in
      for i in 0..<norms.count {
        let gi = g.baseAddress! + i * d
        let pi = p.baseAddress! + i * d
        guard norms[i] > 0 else {
          for j in 0..<d { gi[j] = 0 }
          continue
        }
        var dot: Float = 0
        for j in 0..<d { dot += pi[j] * gi[j] }
        for j in 0..<d { gi[j] = (gi[j] - pi[j] * dot) / norms[i] }
      }
    }
  }
  return dh
}

/// Whether a batch's labels give the kernel loss something to align: at least one pair of
/// equal labels and one pair of different labels.
public func kernelAlignmentIsDefined(labels: [Int32]) -> Bool {
  Set(labels).count > 1 && Set(labels).count < labels.count
}

/// −cos(u(ΦΦᵀ), u(G*)) on features h [B, D] (normalised here); the gradient is ∂L/∂h.
///
/// With g = u(G), t = u(G*): ∂L/∂g = −t/(‖g‖‖t‖) + (g·t) g/(‖g‖³‖t‖); G is symmetric, so
/// ∂L/∂Φ = S Φ with S_ij = S_ji = ∂L/∂g_ij (i < j) and S_ii = 0. O(B²·D).
public func kernelAlignmentLoss(features h: Tensor, labels: [Int32]) -> LossResult {
  let b = h.batchSize
  let d = h.sampleCount
  precondition(labels.count == b, "kernel loss: \(b) rows, \(labels.count) labels")
  let (phi, norms) = rowNormalize(h)
  var gram = [Float](repeating: 0, count: b * b)
  phi.storage.withUnsafeBufferPointer { p in
    gram.withUnsafeMutableBufferPointer { g in
      // G[B, B] = Φ[B, D] · Φ[B, D]ᵀ
      gemm(
        .none, .transposed, m: b, n: b, k: d, a: p.baseAddress!, aCount: p.count,
        b: p.baseAddress!, bCount: p.count, c: g.baseAddress!, cCount: g.count)
    }
  }
  var gt = 0.0
  var gg = 0.0
  var tt = 0.0
  for i in 0..<b {
    for j in (i + 1)..<max(b, i + 1) {
      let g = Double(gram[i * b + j])
      let t = labels[i] == labels[j] ? 1.0 : 0.0
      gt += g * t
      gg += g * g
      tt += t
    }
  }
  guard gg > 0, tt > 0 else {
    return LossResult(loss: 0, gradient: Tensor(zeros: h.shape), correct: 0)
  }
  let (ng, nt) = (gg.squareRoot(), tt.squareRoot())
  let loss = -gt / (ng * nt)
  var s = [Float](repeating: 0, count: b * b)
  for i in 0..<b {
    for j in (i + 1)..<max(b, i + 1) {
      let g = Double(gram[i * b + j])
      let t = labels[i] == labels[j] ? 1.0 : 0.0
      let grad = Float(-t / (ng * nt) + gt * g / (ng * ng * ng * nt))
      s[i * b + j] = grad
      s[j * b + i] = grad
    }
  }
  var dphi = Tensor(zeros: phi.shape)
  s.withUnsafeBufferPointer { sp in
    phi.storage.withUnsafeBufferPointer { p in
      dphi.storage.withUnsafeMutableBufferPointer { out in
        // dΦ[B, D] = S[B, B] · Φ[B, D]
        gemm(
          .none, .none, m: b, n: d, k: b, a: sp.baseAddress!, aCount: sp.count,
          b: p.baseAddress!, bCount: p.count, c: out.baseAddress!, cCount: out.count)
      }
    }
  }
  return LossResult(
    loss: Float(loss), gradient: rowNormalizeBackward(dphi, phi: phi, norms: norms), correct: 0)
}
