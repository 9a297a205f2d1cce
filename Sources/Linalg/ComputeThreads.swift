import CDNNL

/// Parallel loops on the same OpenMP team that runs oneDNN's kernels, so elementwise layers
/// between two convolutions use every core without a second thread pool competing with the
/// first (GCD workers against OpenMP threads still spinning after a convolution cost a third
/// of a CNN step on 2 cores).
public enum ComputeThreads {
  private struct Context {
    let count: Int
    let body: (Range<Int>) -> Void
  }

  /// Calls `body` on disjoint ranges covering 0..<count: on this thread alone when one thread
  /// is set or `count / minimum` < 2, else on `BLAS.threads` threads at once. `body` must only
  /// write inside its range.
  public static func chunks(_ count: Int, minimum: Int = 1 << 15, _ body: (Range<Int>) -> Void) {
    let threads = min(BLAS.threads, count / max(minimum, 1))
    guard threads > 1 else { return body(0..<count) }
    withoutActuallyEscaping(body) { body in
      var context = Context(count: count, body: body)
      withUnsafeMutablePointer(to: &context) { pointer in
        GOMP_parallel(
          { raw in
            let context = raw!.assumingMemoryBound(to: Context.self).pointee
            let (t, n) = (Int(omp_get_thread_num()), Int(omp_get_num_threads()))
            context.body(t * context.count / n..<(t + 1) * context.count / n)
          }, pointer, UInt32(threads), 0)
      }
    }
  }
}
