import Hardware
import Testing

@testable import Linalg

let xeon207 = CPU(
  vendor: "GenuineIntel", brand: "Intel(R) Xeon(R) Processor", family: 6, model: 207,
  features: ["sse3", "ssse3", "sse4_1", "sse4_2", "avx", "fma", "avx2", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16"])
let zen3 = CPU(vendor: "AuthenticAMD", brand: "AMD EPYC", family: 25, model: 1, features: ["sse3", "avx", "fma", "avx2"])
let zen5 = CPU(vendor: "AuthenticAMD", brand: "AMD EPYC", family: 26, model: 2, features: xeon207.features)
let oldIntel = CPU(vendor: "GenuineIntel", brand: "Xeon E5", family: 6, model: 45, features: ["sse3", "avx"])
let atom = CPU(vendor: "GenuineIntel", brand: "Atom", family: 6, model: 28, features: ["sse3", "ssse3"])

@Suite("OpenBLAS kernel choice")
struct KernelChoiceTests {
  @Test func cpuFeaturesMapToTheBestForceableCore() {
    #expect(xeon207.vectorISA == .avx512)
    #expect(KernelChoice.candidates(for: xeon207) == ["SkylakeX", "Haswell"])
    #expect(KernelChoice.candidates(for: zen5) == ["SkylakeX", "Zen", "Haswell"])
    #expect(KernelChoice.candidates(for: zen3) == ["Zen", "Haswell"])
    #expect(KernelChoice.candidates(for: oldIntel) == ["Sandybridge"])
    #expect(KernelChoice.candidates(for: atom).isEmpty)
    // AVX-512 F alone (Knights Landing lacks BW/VL) is not the Skylake-X kernels' ISA.
    let partial = CPU(vendor: "GenuineIntel", brand: "", family: 6, model: 87, features: ["avx", "fma", "avx2", "avx512f", "avx512cd"])
    #expect(partial.vectorISA == .avx2)
    #expect(KernelChoice.isa(ofCore: "Prescott") == .sse)
    #expect(KernelChoice.isa(ofCore: "cooperlake") == .avx512)
    #expect(KernelChoice.isa(ofCore: "Zen") == .avx2)
    #expect(KernelChoice.isa(ofCore: "SomethingNewer") == nil)
  }

  @Test func aFallbackCoreIsReplacedOnce() {
    let first = KernelChoice.decide(environment: [:], cpu: xeon207, loadedCore: "Prescott", selfCheck: { true })
    #expect(first.action == .reexecute(["OPENBLAS_CORETYPE": "SkylakeX", "STAGEWISE_CORETYPE": "SkylakeX", "STAGEWISE_CORETYPE_DEFAULT": "Prescott"]))
    // The restarted process (and any child that inherits the variables) keeps it.
    let restarted = ["OPENBLAS_CORETYPE": "SkylakeX", "STAGEWISE_CORETYPE": "SkylakeX", "STAGEWISE_CORETYPE_DEFAULT": "Prescott"]
    let second = KernelChoice.decide(environment: restarted, cpu: xeon207, loadedCore: "SkylakeX", selfCheck: { true })
    #expect(second.action == .keep)
    #expect(second.reason.contains("Prescott") && second.reason.contains("SkylakeX"))
  }

  @Test func aGoodEnoughCoreIsKeptWithoutTheSelfCheck() {
    var checked = false
    let zen = KernelChoice.decide(environment: [:], cpu: zen3, loadedCore: "Zen", selfCheck: { checked = true; return true })
    #expect(zen.action == .keep)
    let cooperlake = KernelChoice.decide(environment: [:], cpu: xeon207, loadedCore: "Cooperlake", selfCheck: { checked = true; return true })
    #expect(cooperlake.action == .keep)
    #expect(!checked)
    // A core name from a newer OpenBLAS: trust it.
    #expect(KernelChoice.decide(environment: [:], cpu: xeon207, loadedCore: "Zen5", selfCheck: { true }).action == .keep)
  }

  @Test func aCoreThatFailsTheSelfCheckIsNotUsed() {
    let env = ["OPENBLAS_CORETYPE": "SkylakeX", "STAGEWISE_CORETYPE": "SkylakeX", "STAGEWISE_CORETYPE_DEFAULT": "Prescott"]
    let failed = KernelChoice.decide(environment: env, cpu: xeon207, loadedCore: "SkylakeX", selfCheck: { false })
    #expect(failed.action == .reexecute([
      "OPENBLAS_CORETYPE": "Haswell", "STAGEWISE_CORETYPE": "Haswell", "STAGEWISE_CORETYPE_DEFAULT": "Prescott",
      "STAGEWISE_CORETYPE_REJECTED": "skylakex",
    ]))
    #expect(failed.warning?.contains("double-precision reference") == true)
    // Haswell fails too: back to OpenBLAS's own choice, and no further restarts.
    let env2 = ["OPENBLAS_CORETYPE": "Haswell", "STAGEWISE_CORETYPE": "Haswell", "STAGEWISE_CORETYPE_DEFAULT": "Prescott", "STAGEWISE_CORETYPE_REJECTED": "skylakex"]
    let failedAgain = KernelChoice.decide(environment: env2, cpu: xeon207, loadedCore: "Haswell", selfCheck: { false })
    #expect(failedAgain.action == .reexecute([
      "OPENBLAS_CORETYPE": nil, "STAGEWISE_CORETYPE": nil, "STAGEWISE_CORETYPE_DEFAULT": "Prescott",
      "STAGEWISE_CORETYPE_REJECTED": "haswell,skylakex",
    ]))
    let settled = KernelChoice.decide(
      environment: ["STAGEWISE_CORETYPE_DEFAULT": "Prescott", "STAGEWISE_CORETYPE_REJECTED": "haswell,skylakex"],
      cpu: xeon207, loadedCore: "Prescott", selfCheck: { false })
    #expect(settled.action == .keep)
    #expect(settled.reason.contains("rejected"))
  }

  @Test func aCoreThisOpenBLASWouldNotLoadCountsAsRejected() {
    let env = ["OPENBLAS_CORETYPE": "SkylakeX", "STAGEWISE_CORETYPE": "SkylakeX", "STAGEWISE_CORETYPE_DEFAULT": "Prescott"]
    let choice = KernelChoice.decide(environment: env, cpu: xeon207, loadedCore: "Prescott", selfCheck: { true })
    guard case .reexecute(let variables) = choice.action else { Issue.record("expected a restart"); return }
    #expect(variables["OPENBLAS_CORETYPE"] == "Haswell")
  }

  @Test func aUsersCoreIsHonouredAndAnUnknownOneRefused() {
    let haswell = KernelChoice.decide(environment: ["OPENBLAS_CORETYPE": "Haswell"], cpu: xeon207, loadedCore: "Haswell", selfCheck: { true })
    #expect(haswell.action == .keep)
    #expect(haswell.reason.contains("OPENBLAS_CORETYPE=Haswell"))
    // Even a weak one: the user asked for it.
    #expect(KernelChoice.decide(environment: ["OPENBLAS_CORETYPE": "prescott"], cpu: xeon207, loadedCore: "Prescott", selfCheck: { true }).action == .keep)
    // OpenBLAS 0.3.21 does not know "SapphireRapids" and runs something else instead.
    let unknown = KernelChoice.decide(environment: ["OPENBLAS_CORETYPE": "SapphireRapids"], cpu: xeon207, loadedCore: "Cooperlake", selfCheck: { true })
    guard case .refuse(let message) = unknown.action else { Issue.record("expected a refusal"); return }
    #expect(message.contains("SapphireRapids") && message.contains("Cooperlake") && message.contains("Unset"))
    // A user's core that fails the self-check is still theirs, with a warning.
    let broken = KernelChoice.decide(environment: ["OPENBLAS_CORETYPE": "Haswell"], cpu: xeon207, loadedCore: "Haswell", selfCheck: { false })
    #expect(broken.action == .keep)
    #expect(broken.warning != nil)
  }

  @Test func sgemmMatchesTheDoubleReferenceHere() {
    let error = GemmSelfCheck.worstRelativeError()
    #expect(error < 1e-5)
    #expect(error > 0)  // float rounding is there: the check compares, it does not just pass
  }
}
