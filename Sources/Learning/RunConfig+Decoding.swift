import Foundation
import NN
import Yams

extension RunConfig {
  /// Decodes YAML text; every error names its key path.
  public static func parse(yaml text: String) throws(ConfigError) -> RunConfig {
    do {
      // An empty document means "all defaults".
      if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return RunConfig() }
      return try YAMLDecoder().decode(RunConfig.self, from: text)
    } catch {
      throw ConfigError.from(error)
    }
  }

  /// Reads and decodes a YAML file.
  public static func load(path: String) throws(ConfigError) -> RunConfig {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
      throw ConfigError(path: "", "cannot read config file \(path): check the path")
    }
    do {
      return try parse(yaml: text)
    } catch {
      throw ConfigError(path: error.path, "\(error.message) (in \(path))")
    }
  }

  /// FNV-1a of the resolved YAML (less `security`): checkpoints record it, so one from
  /// another config is noticed.
  public var configHash: String {
    var hashed = self
    hashed.security = SecurityConfig()
    return String(Self.fnv1a(hashed.yaml()), radix: 16)
  }

  /// What the weights mean, and what a resumed run must keep: the keys declared with a model
  /// role (see `RunConfig.keys`) — the seed, the method and its settings, the stages, the
  /// optimizer's kind, the data set's source and size, the batch size. Everything else may
  /// change when a stopped run goes on.
  var modelIdentity: ModelView { ModelView(entries: identityEntries) }

  /// FNV-1a of `modelIdentity`'s YAML: checkpoints record it as `model_hash`.
  public var modelHash: String {
    String(Self.fnv1a((try? YAMLEncoder().encode(modelIdentity)) ?? ""), radix: 16)
  }

  static func fnv1a(_ text: String) -> UInt64 {
    text.utf8.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
  }

  /// The metadata every checkpoint carries about its config.
  public var checkpointMetadata: [String: String] {
    ["model_hash": modelHash, "config_hash": configHash]
  }

  /// Why a checkpoint with `metadata` does not belong to this config, or nil when it does: by
  /// its model hash, or — a checkpoint from before model hashes — by its whole config's hash.
  public func mismatch(checkpoint metadata: [String: String]) -> String? {
    if let stored = metadata["model_hash"] {
      return stored == modelHash
        ? nil
        : "was written for another model (hash \(stored), this config's is \(modelHash)): use the "
          + "run's own config.yaml"
    }
    if let stored = metadata["config_hash"], stored != configHash {
      return
        "was written for another config (hash \(stored), this one is \(configHash)): use the run's "
        + "own config.yaml"
    }
    return nil
  }

  /// The top-level keys in whose model part `other` differs from this config.
  public func modelDifferences(from other: RunConfig) -> [String] {
    func part(_ key: ConfigKey<RunConfig>, _ config: RunConfig) -> String {
      (try? YAMLEncoder().encode(ModelView(entries: key.identity(config)))) ?? ""
    }
    return Self.keys.filter { part($0, self) != part($0, other) }.map(\.name)
  }

  /// The config as YAML, every default written out.
  public func yaml() -> String {
    (try? YAMLEncoder().encode(self)) ?? ""
  }
}

extension LayerConfig {
  enum CodingKeys: String, CodingKey, CaseIterable {
    case type, out, `in`, kernel, stride, padding, size, rate, layers
  }

  public init(from decoder: any Decoder) throws {
    try decoder.rejectUnknownKeys(CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    guard c.contains(.type) else {
      throw ConfigError(
        codingPath: decoder.codingPath,
        "a layer needs `type`, one of: \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    type = try c.choice(.type, or: .relu)
    out = try c.decodeIfPresent(Int.self, forKey: .out)
    self.in = try c.decodeIfPresent(Int.self, forKey: .in)
    kernel = try c.decodeIfPresent(Int.self, forKey: .kernel)
    stride = try c.decodeIfPresent(Int.self, forKey: .stride)
    padding = try c.decodeIfPresent(Int.self, forKey: .padding)
    size = try c.decodeIfPresent(Int.self, forKey: .size)
    rate = try c.decodeIfPresent(Float.self, forKey: .rate)
    layers = try c.decodeIfPresent([LayerConfig].self, forKey: .layers)
  }
}

extension StageConfig {
  enum CodingKeys: String, CodingKey, CaseIterable { case layers, head, replicas }

  public init(from decoder: any Decoder) throws {
    try decoder.rejectUnknownKeys(CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    layers = try c.decode([LayerConfig].self, forKey: .layers)
    head = try c.value(.head, or: HeadConfig())
    replicas = try c.value(.replicas, or: 1)
  }

  /// `replicas` is written only when there are several: a config without them reads as before.
  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(layers, forKey: .layers)
    try c.encode(head, forKey: .head)
    if replicas != 1 { try c.encode(replicas, forKey: .replicas) }
  }
}
