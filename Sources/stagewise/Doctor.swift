import ArgumentParser
import Datasets
import Foundation
import Hardware
import Linalg
import ZMQ

/// `stagewise doctor`: what this machine gives Stagewise, measured, and what to do about
/// anything that would make a run slow or fail.
struct Doctor: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Check this machine: CPU and ISA, the OpenBLAS kernels and why, sgemm against the FMA peak, "
      + "libzmq, the data set.",
    discussion: "Exits 1 when it finds a problem; each problem comes with what to do.")

  @Option(help: "Fashion-MNIST folder to look for.") var data = FashionMNIST.defaultDirectory
  @Flag(help: "Print the findings as one JSON object.") var json = false
  @Flag(help: "Skip the FMA-peak and sgemm measurements (a few seconds).") var noMeasure = false

  struct Findings: Codable {
    var kernels: KernelReport
    var cpuISA: String
    var coreISA: String?
    var fmaPeakGFLOPS: [String: Double]
    var sgemmGFLOPS: [String: Double]
    var zmqVersion: String
    var curve: Bool
    var dataPresent: Bool
    var problems: [String]
  }

  func run() throws {
    let report = KernelReport.current
    let cpu = CPU.current
    let cores = CPU.cores
    var problems: [String] = []
    if let warning = KernelChoice.current.warning { problems.append(warning) }
    let coreISA = KernelChoice.isa(ofCore: report.core)
    if let coreISA, coreISA < cpu.vectorISA {
      let best = KernelChoice.candidates(for: cpu).first ?? report.core
      problems.append(
        "OpenBLAS runs \(report.core) (\(coreISA)) kernels on a CPU with \(cpu.vectorISA): several "
          + "times slower than it could be. "
          + (ProcessInfo.processInfo.environment[KernelChoice.openBLASVariable] != nil
            ? "Unset OPENBLAS_CORETYPE to let Stagewise choose, or set it to \(best)."
            : "Stagewise's own choice failed (see the reason above); try "
              + "OPENBLAS_CORETYPE=\(best).")
      )
    }
    if report.threading != "OpenMP" {
      problems.append(
        "OpenBLAS runs its own \(report.threading) threads beside oneDNN's OpenMP team: with more "
          + "than one thread they compete for the cores. `bash scripts/setup.sh` installs Debian's "
          + "libopenblas0-openmp, which the build links."
      )
    }
    var peak: [String: Double] = [:]
    var sgemm: [String: Double] = [:]
    for threads in noMeasure ? [] : Set([1, cores]).sorted() {
      let key = threads == 1 ? "1 core" : "\(threads) cores"
      peak[key] = FMAPeak.measure(threads: threads)
      sgemm[key] = BLAS.measureGemm(m: 1024, n: 1024, k: 1024, threads: threads)
      if let p = peak[key], let s = sgemm[key], s < 0.5 * p {
        problems.append(
          String(
            format:
              "sgemm on %@ reaches %.0f GFLOP/s, %.0f %% of the FMA peak (%.0f): another process "
              + "may be using the cores (check `top`), or the kernels are weak for this CPU",
            key, s, 100 * s / p, p))
      }
    }
    let curve = Context.hasCurve
    if !curve {
      problems.append(
        "libzmq was built without CURVE: runs across machines would need --insecure. Install "
          + "Debian's libzmq5 (built with libsodium)."
      )
    }
    let dataPresent = FashionMNIST.missingFiles(in: data).isEmpty
    if !dataPresent {
      problems.append(
        "Fashion-MNIST is not in \(data): `bash scripts/setup.sh` (or `apt-get install "
          + "dataset-fashion-mnist`) installs it."
      )
    }

    let findings = Findings(
      kernels: report, cpuISA: cpu.vectorISA.description, coreISA: coreISA?.description,
      fmaPeakGFLOPS: peak,
      sgemmGFLOPS: sgemm, zmqVersion: Context.version, curve: curve, dataPresent: dataPresent,
      problems: problems)
    if json {
      Console.print(
        String(decoding: try JSONEncoder.stagewise(pretty: true).encode(findings), as: UTF8.self))
    } else {
      func rates(_ values: [String: Double]) -> String {
        values.sorted { $0.key < $1.key }.map {
          String(format: "%@ %.0f GFLOP/s", $0.key, $0.value)
        }.joined(separator: ", ")
      }
      Console.print("CPU        \(report.cpu); \(cores) cores")
      Console.print(
        "OpenBLAS   \(report.openBLAS) (\(report.threading) threads), core \(report.core) "
          + "(\(coreISA?.description ?? "unknown ISA")): \(report.reason)"
      )
      Console.print("FMA peak   \(peak.isEmpty ? "no FMA on this CPU" : rates(peak))")
      let ofPeak = sgemm.keys.sorted().compactMap { key in
        peak[key].map { String(format: "%.2f", sgemm[key]! / $0) }
      }
      Console.print(
        "sgemm      1024³: \(rates(sgemm))"
          + (ofPeak.isEmpty ? "" : " (\(ofPeak.joined(separator: ", ")) × peak)"))
      Console.print("libzmq     \(Context.version), CURVE \(curve ? "yes" : "no")")
      Console.print("data       Fashion-MNIST \(dataPresent ? "present" : "missing") in \(data)")
      Console.print(
        problems.isEmpty
          ? "no problems found" : "problems:\n" + problems.map { "- \($0)" }.joined(separator: "\n")
      )
    }
    if !problems.isEmpty { throw ExitCode(1) }
  }
}
