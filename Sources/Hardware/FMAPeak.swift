import CCPU
import Foundation

/// The processor's single-precision FMA peak, measured: independent fused multiply–adds on
/// the widest registers this CPU has, in one thread per core at once. The yardstick for any
/// GFLOP/s a benchmark reports.
public enum FMAPeak {
  /// GFLOP/s of `threads` threads running the FMA loop together (each on its own core when
  /// the OS allows), the best of `rounds` rounds of about `seconds` each; nil where no FMA
  /// instruction set is available.
  public static func measure(threads: Int = 1, seconds: Double = 0.2, rounds: Int = 5) -> Double? {
    let width = CPU.current.vectorISA == .avx512 ? 16 : 8
    guard ccpu_fma_loop(Int32(width), 1000) > 0 else { return nil }
    // Calibrate on one thread: iterations for `seconds`.
    var iterations: Int64 = 1 << 16
    while true {
      let start = ContinuousClock.now
      _ = ccpu_fma_loop(Int32(width), iterations)
      let elapsed = (ContinuousClock.now - start).seconds
      if elapsed > seconds / 8 {
        iterations = Int64(Double(iterations) * seconds / elapsed)
        break
      }
      iterations *= 4
    }
    var best = 0.0
    let perThread = iterations
    for _ in 0..<rounds {
      let flops = UnsafeMutableBufferPointer<Double>.allocate(capacity: threads)
      defer { flops.deallocate() }
      // Each thread writes its own slot; the address travels as an integer (Sendable).
      let slots = Int(bitPattern: flops.baseAddress)
      let start = ContinuousClock.now
      DispatchQueue.concurrentPerform(iterations: threads) { t in
        UnsafeMutablePointer<Double>(bitPattern: slots)![t] = ccpu_fma_loop(Int32(width), perThread)
      }
      let elapsed = (ContinuousClock.now - start).seconds
      best = max(best, flops.reduce(0, +) / elapsed / 1e9)
    }
    return best
  }
}

extension Duration {
  /// The duration in seconds, as a Double.
  public var seconds: Double {
    let (s, attoseconds) = components
    return Double(s) + Double(attoseconds) * 1e-18
  }
}
