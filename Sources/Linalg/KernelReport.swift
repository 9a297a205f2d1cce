import Foundation
import Hardware

/// What this process computes with: the CPU, its vector ISA, and the OpenBLAS core it runs
/// and why. Printed in every run's header, recorded in `run.json` and in benchmark reports,
/// so any figure can be read against the kernels that made it.
public struct KernelReport: Sendable, Codable, Equatable {
  public var cpu: String
  public var isa: String
  public var cores: Int
  public var openBLAS: String
  /// OpenBLAS's threading (`OpenMP`, `pthreads`, `sequential`).
  public var threading: String
  public var core: String
  public var reason: String
  public var warning: String?

  /// This process's, decided from its environment, the CPU and the self-check (once).
  public static let current: KernelReport = {
    let choice = KernelChoice.current
    let cpu = CPU.current
    return KernelReport(
      cpu: cpu.summary, isa: cpu.vectorISA.description, cores: CPU.cores, openBLAS: BLAS.version,
      threading: BLAS.threading,
      core: BLAS.coreName, reason: choice.reason, warning: choice.warning)
  }()

  /// `CPU …: AVX-512; OpenBLAS 0.3.21 core SkylakeX (why)`.
  public var line: String {
    "CPU \(cpu), \(cores) cores; OpenBLAS \(openBLAS) (\(threading)) core \(core) (\(reason))"
  }
}

extension KernelChoice {
  /// The decision for this process (the self-check runs once, on first use).
  public static let current: KernelChoice = decide(
    environment: ProcessInfo.processInfo.environment, cpu: .current, loadedCore: BLAS.coreName,
    selfCheck: GemmSelfCheck.passes)
}
