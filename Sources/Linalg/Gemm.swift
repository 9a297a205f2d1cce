import CBLAS
import CDNNL
import Hardware

/// Whether a matrix operand is used as stored or transposed.
public enum Transpose: Sendable {
  case none
  case transposed

  var cblas: CBLAS_TRANSPOSE { self == .none ? CblasNoTrans : CblasTrans }
}

/// C[m×n] = alpha · op(A)[m×k] · op(B)[k×n] + beta · C, all row-major and contiguous.
///
/// `a` holds A as stored: m×k when `transA == .none`, else k×m (likewise `b`).
/// Shapes are the caller's promise; the element counts are checked here because a wrong
/// count would read or write out of bounds inside BLAS.
@inlinable
public func gemm(
  _ transA: Transpose, _ transB: Transpose,
  m: Int, n: Int, k: Int,
  alpha: Float = 1, a: UnsafePointer<Float>, aCount: Int,
  b: UnsafePointer<Float>, bCount: Int,
  beta: Float = 0, c: UnsafeMutablePointer<Float>, cCount: Int
) {
  precondition(m >= 0 && n >= 0 && k >= 0, "gemm: negative dimension")
  precondition(aCount >= m * k && bCount >= k * n && cCount >= m * n, "gemm: operand too small")
  if m == 0 || n == 0 { return }
  let lda = transA == .none ? k : m
  let ldb = transB == .none ? n : k
  gemmRaw(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, n)
}

@usableFromInline
func gemmRaw(
  _ transA: Transpose, _ transB: Transpose, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
  _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float,
  _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
  cblas_sgemm(
    CblasRowMajor, transA.cblas, transB.cblas, blasint(m), blasint(n), blasint(k), alpha,
    a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
}

/// The process-wide OpenBLAS settings.
public enum BLAS {
  /// Sets how many threads OpenBLAS, and oneDNN's OpenMP, use for each call in this process.
  public static func setThreads(_ count: Int) {
    openblas_set_num_threads(Int32(max(1, count)))
    omp_set_num_threads(Int32(max(1, count)))
  }

  /// The number of threads OpenBLAS will use.
  public static var threads: Int { Int(openblas_get_num_threads()) }

  /// The kernel family OpenBLAS chose (for example `Haswell` or `Cooperlake`); every
  /// benchmark prints it so its figures can be read.
  public static var coreName: String {
    guard let name = openblas_get_corename() else { return "unknown" }
    return String(cString: name)
  }

  /// How the loaded OpenBLAS runs threads: `OpenMP` (what Stagewise links, sharing oneDNN's
  /// team), `pthreads` or `sequential`.
  public static var threading: String {
    switch openblas_get_parallel() {
    case 0: return "sequential"
    case 1: return "pthreads"
    case 2: return "OpenMP"
    default: return "unknown"
    }
  }

  /// The library's version, from its build configuration (`0.3.21`).
  public static var version: String {
    guard let config = openblas_get_config() else { return "unknown" }
    let words = String(cString: config).split(separator: " ")
    return words.count > 1 && words[0] == "OpenBLAS" ? String(words[1]) : "unknown"
  }
}

extension BLAS {
  /// GFLOP/s of sgemm C[m×n] += A[m×k]·B[k×n] with `threads` OpenBLAS threads: the median of
  /// `rounds` rounds of about `seconds` each, after one warm-up call. Restores the thread count.
  public static func measureGemm(
    m: Int, n: Int, k: Int, threads: Int, seconds: Double = 0.2, rounds: Int = 3
  ) -> Double {
    let previous = BLAS.threads
    setThreads(threads)
    defer { setThreads(previous) }
    let a = [Float](repeating: 0.01, count: m * k)
    let b = [Float](repeating: 0.01, count: k * n)
    var c = [Float](repeating: 0, count: m * n)
    func call() {
      gemm(
        .none, .none, m: m, n: n, k: k, a: a, aCount: a.count, b: b, bCount: b.count, beta: 1,
        c: &c, cCount: c.count)
    }
    var clock = ContinuousClock.now
    call()
    let once = max((ContinuousClock.now - clock).seconds, 1e-6)
    let calls = max(1, Int(seconds / once))
    var rates: [Double] = []
    for _ in 0..<rounds {
      clock = ContinuousClock.now
      for _ in 0..<calls { call() }
      rates.append(
        2 * Double(m * n * k) * Double(calls) / (ContinuousClock.now - clock).seconds / 1e9)
    }
    return rates.sorted()[rates.count / 2]
  }
}
