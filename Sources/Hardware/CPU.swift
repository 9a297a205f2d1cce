import CCPU
import Foundation

/// The processor this process runs on, from CPUID: who made it, which model, and which vector
/// instruction sets it can use (each counted only when the OS saves its registers).
public struct CPU: Sendable, Codable, Equatable {
  /// The widest vector instruction set a compute kernel can rely on, weakest first.
  public enum VectorISA: Int, Sendable, Codable, Comparable, CaseIterable, CustomStringConvertible {
    /// x86-64's baseline: SSE2, maybe SSE3 and SSE4.
    case sse = 0
    /// 256-bit AVX without FMA or AVX2.
    case avx = 1
    /// AVX2 with FMA3.
    case avx2 = 2
    /// AVX-512 F, CD, BW, DQ and VL (Skylake-SP and later, Zen 4 and later).
    case avx512 = 3

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    public var description: String { ["SSE", "AVX", "AVX2+FMA", "AVX-512"][rawValue] }
  }

  public var vendor: String
  public var brand: String
  public var family: Int
  public var model: Int
  /// Feature names as /proc/cpuinfo spells them (`avx2`, `avx512f`, `amx`…).
  public var features: [String]

  public init(vendor: String, brand: String, family: Int, model: Int, features: [String]) {
    (self.vendor, self.brand, self.family, self.model, self.features) = (
      vendor, brand, family, model, features
    )
  }

  /// This machine's processor.
  public static let current: CPU = {
    var info = ccpu_info()
    ccpu_identify(&info)
    let vendor = withUnsafeBytes(of: info.vendor) {
      String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
    }
    let brand = withUnsafeBytes(of: info.brand) {
      String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
    }
    let flags: [(String, Int32)] = [
      ("sse3", info.sse3), ("ssse3", info.ssse3), ("sse4_1", info.sse41), ("sse4_2", info.sse42),
      ("avx", info.avx), ("fma", info.fma), ("avx2", info.avx2), ("avx512f", info.avx512f),
      ("avx512cd", info.avx512cd), ("avx512bw", info.avx512bw), ("avx512dq", info.avx512dq),
      ("avx512vl", info.avx512vl), ("avx512_bf16", info.avx512bf16),
      ("avx512_fp16", info.avx512fp16),
      ("amx", info.amx),
    ]
    return CPU(
      vendor: vendor, brand: brand.trimmingCharacters(in: .whitespaces), family: Int(info.family),
      model: Int(info.model), features: flags.filter { $0.1 != 0 }.map(\.0))
  }()

  public func has(_ feature: String) -> Bool { features.contains(feature) }

  public var isAMD: Bool { vendor == "AuthenticAMD" || vendor == "HygonGenuine" }

  /// The widest vector instruction set every kernel of that level may use here.
  public var vectorISA: VectorISA {
    if ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"].allSatisfy(has) {
      return .avx512
    }
    if has("avx2") && has("fma") { return .avx2 }
    if has("avx") { return .avx }
    return .sse
  }

  /// `Intel(R) Xeon(R) Processor (family 6, model 207): AVX-512 (BF16, FP16), AMX`.
  public var summary: String {
    var extras: [String] = []
    if has("avx512_bf16") { extras.append("BF16") }
    if has("avx512_fp16") { extras.append("FP16") }
    let isa =
      vectorISA.description
      + (vectorISA == .avx512 && !extras.isEmpty ? " (\(extras.joined(separator: ", ")))" : "")
    let name = brand.isEmpty ? vendor : brand
    return "\(name) (family \(family), model \(model)): \(isa)\(has("amx") ? ", AMX" : "")"
  }

  /// Online processors.
  public static var cores: Int { ProcessInfo.processInfo.activeProcessorCount }
}
