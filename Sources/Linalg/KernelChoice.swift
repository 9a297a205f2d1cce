import Hardware

/// Which OpenBLAS kernel family ("core") a process should run, decided once at start-up.
///
/// OpenBLAS picks its core from the CPU's family and model when the library loads, before
/// `main`, and a build older than the CPU falls back to SSE3 kernels (Debian's 0.3.21 runs
/// `Prescott` on an Intel Xeon model 207, 4–7× slower than its AVX-512 kernels). Only a
/// process started with `OPENBLAS_CORETYPE` set gets another core, so the decision is: keep
/// this process, re-execute it once with a core named, or refuse a bad setting. It is a pure
/// function of the environment, the CPU, the core OpenBLAS loaded and the self-check, so it
/// is tested without starting anything.
public struct KernelChoice: Sendable, Equatable {
  /// The environment variable OpenBLAS reads.
  public static let openBLASVariable = "OPENBLAS_CORETYPE"
  /// Set beside it by Stagewise, to the same value, when the choice was Stagewise's (so child
  /// processes, which inherit both, tell it from a user's).
  public static let chosenVariable = "STAGEWISE_CORETYPE"
  /// The core OpenBLAS picked on its own, remembered across the re-execution.
  public static let defaultVariable = "STAGEWISE_CORETYPE_DEFAULT"
  /// Cores that failed the self-check or that this OpenBLAS would not load, comma-separated.
  public static let rejectedVariable = "STAGEWISE_CORETYPE_REJECTED"

  /// What the starting process does.
  public enum Action: Sendable, Equatable {
    /// Run with the core that is loaded.
    case keep
    /// Start this program again with these variables set (nil: removed).
    case reexecute([String: String?])
    /// Refuse to run: the message says what is wrong and what to do.
    case refuse(String)
  }

  public var action: Action
  /// Why this core, in one line, for headers, `run.json` and `stagewise doctor`.
  public var reason: String
  /// A problem worth a warning even though the run goes on.
  public var warning: String?

  /// The vector instruction set each OpenBLAS x86-64 core's kernels use. Unknown names (a
  /// newer OpenBLAS's) map to nil: Stagewise then trusts OpenBLAS.
  public static func isa(ofCore name: String) -> CPU.VectorISA? {
    switch name.lowercased() {
    case "skylakex", "cooperlake", "sapphirerapids": return .avx512
    case "haswell", "zen": return .avx2
    case "sandybridge", "bulldozer", "piledriver", "steamroller", "excavator": return .avx
    case "katmai", "coppermine", "northwood", "prescott", "banias", "atom", "core2", "penryn",
      "dunnington",
      "nehalem", "athlon", "opteron", "opteron_sse3", "barcelona", "nano", "bobcat":
      return .sse
    default: return nil
    }
  }

  /// The cores worth forcing on a CPU, best first; each is a name OpenBLAS 0.3.x accepts in
  /// `OPENBLAS_CORETYPE`. (0.3.21 runs `Cooperlake` only by its own choice — the name is not
  /// in its list — and its sgemm is SkylakeX's, so AVX-512 CPUs get `SkylakeX`.)
  public static func candidates(for cpu: CPU) -> [String] {
    switch cpu.vectorISA {
    case .avx512: return cpu.isAMD ? ["SkylakeX", "Zen", "Haswell"] : ["SkylakeX", "Haswell"]
    case .avx2: return cpu.isAMD ? ["Zen", "Haswell"] : ["Haswell"]
    case .avx: return ["Sandybridge"]
    case .sse: return []
    }
  }

  /// Decides for a process that has OpenBLAS loaded with `loadedCore`.
  ///
  /// - environment: this process's variables.
  /// - selfCheck: whether sgemm with the loaded core matches the double-precision reference;
  ///   asked only for a core that Stagewise or the user chose (OpenBLAS's own is trusted).
  public static func decide(
    environment: [String: String], cpu: CPU, loadedCore: String, selfCheck: () -> Bool
  ) -> KernelChoice {
    let requested = environment[openBLASVariable].flatMap { $0.isEmpty ? nil : $0 }
    let ours = environment[chosenVariable]
    let rejected = Set(
      (environment[rejectedVariable] ?? "").split(separator: ",").map { String($0).lowercased() })
    let openBLASDefault = environment[defaultVariable] ?? loadedCore
    let loaded = loadedCore.lowercased()
    let failedCheck =
      "sgemm with the \(loadedCore) kernels does not match the double-precision reference"

    // A user's own setting is always honoured, and never silently replaced.
    if let requested, requested != ours {
      guard requested.lowercased() == loaded else {
        return KernelChoice(
          action: .refuse(
            "\(openBLASVariable)=\(requested) is not a core this OpenBLAS accepts: it ran "
              + "\(loadedCore) instead. "
              + "Unset it to let Stagewise choose (this CPU: \(cpu.vectorISA)), or name one of: "
              + (candidates(for: cpu) + ["Prescott"]).joined(separator: ", ") + "."),
          reason: "", warning: nil)
      }
      return KernelChoice(
        action: .keep, reason: "\(openBLASVariable)=\(requested) set in the environment",
        warning: selfCheck()
          ? nil
          : failedCheck
            + "; results may be wrong (unset \(openBLASVariable) to let Stagewise choose)")
    }

    let best = candidates(for: cpu).filter { !rejected.contains($0.lowercased()) }
    let strongerThanDefault = best.filter {
      (isa(ofCore: $0) ?? .sse) > (isa(ofCore: openBLASDefault) ?? .avx512)
    }
    func next(after current: String?, because why: String) -> KernelChoice {
      let rejectedNow = rejected.union(current.map { [$0.lowercased()] } ?? [])
      let remaining = strongerThanDefault.filter { !rejectedNow.contains($0.lowercased()) }
      let list = rejectedNow.sorted().joined(separator: ",")
      if let core = remaining.first {
        return KernelChoice(
          action: .reexecute([
            openBLASVariable: core, chosenVariable: core, defaultVariable: openBLASDefault,
            rejectedVariable: list,
          ]), reason: why, warning: why)
      }
      // Back to OpenBLAS's own choice, without asking again.
      return KernelChoice(
        action: .reexecute([
          openBLASVariable: nil, chosenVariable: nil, defaultVariable: openBLASDefault,
          rejectedVariable: list,
        ]),
        reason: why, warning: why)
    }

    if let ours, requested == ours {
      guard loaded == ours.lowercased() else {
        return next(
          after: ours,
          because: "this OpenBLAS would not load the \(ours) kernels (it ran \(loadedCore))")
      }
      guard selfCheck() else { return next(after: ours, because: failedCheck + "; not using them") }
      return KernelChoice(
        action: .keep,
        reason:
          "OpenBLAS chose \(openBLASDefault) for this CPU; its \(cpu.vectorISA) allows "
          + "\(loadedCore), which Stagewise chose (self-check passed)",
        warning: nil)
    }

    // Nothing set: OpenBLAS's own choice stands unless a stronger core fits this CPU.
    let suffix = rejected.isEmpty ? "" : " (\(rejected.sorted().joined(separator: ", ")) rejected)"
    if let core = strongerThanDefault.first,
      (isa(ofCore: loadedCore) ?? .avx512) < (isa(ofCore: core) ?? .sse)
    {
      return KernelChoice(
        action: .reexecute([
          openBLASVariable: core, chosenVariable: core, defaultVariable: loadedCore,
        ]),
        reason:
          "OpenBLAS chose \(loadedCore); this CPU has \(cpu.vectorISA), so Stagewise starts again "
          + "with \(core)",
        warning: nil)
    }
    return KernelChoice(
      action: .keep, reason: "OpenBLAS's own choice for this CPU\(suffix)", warning: nil)
  }
}
