import Foundation
import Hardware
import Linalg
import Testing

@Suite("OpenBLAS kernels in a real process")
struct KernelTests {
  struct Findings: Decodable {
    struct Kernels: Decodable { var core: String; var reason: String }
    var kernels: Kernels
    var problems: [String]
  }

  /// The child runs a core that fits this CPU: OpenBLAS's own when it knows the CPU, else the
  /// one Stagewise restarted it with; a core preset in the environment is honoured instead.
  @Test func aChildProcessRunsACoreConsistentWithTheCPU() throws {
    let result = try ChildProcess.stagewise(["doctor", "--json", "--no-measure"], timeout: .seconds(60))
    #expect(!result.timedOut)
    let findings = try JSONDecoder().decode(Findings.self, from: Data(result.stdout.utf8))
    let core = findings.kernels.core
    if let preset = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"], !preset.isEmpty {
      #expect(core.lowercased() == preset.lowercased())
      #expect(findings.kernels.reason.contains("OPENBLAS_CORETYPE=\(preset)"))
    } else {
      let cpu = CPU.current
      let coreISA = try #require(KernelChoice.isa(ofCore: core), "core \(core)")
      #expect(coreISA >= cpu.vectorISA, "\(core) on \(cpu.summary)")
      #expect(findings.problems.isEmpty, "\(findings.problems)")
      #expect(result.status == 0)
    }
  }

  @Test func anOpenBLASCoreNameItDoesNotKnowIsOneClearError() throws {
    let result = try ChildProcess.stagewise(["doctor", "--no-measure"], environment: ["OPENBLAS_CORETYPE": "NoSuchCore"])
    expectOneLineError(result, mentioning: "OPENBLAS_CORETYPE=NoSuchCore is not a core this OpenBLAS accepts")
    #expect(result.status == 2)
  }
}
