import NN
import TestSupport
import Testing

@testable import Learning

@Suite("Config keys: each declared once")
struct ConfigKeyTests {
  /// A stored property without a declaration would be dropped by decoding and encoding alike.
  static func undeclared<S: ConfigSection>(_ section: S.Type) -> [String] {
    let stored = Mirror(reflecting: S()).children.compactMap(\.label)
    let declared = S.keys.map(\.name)
    return stored.filter { !declared.contains($0) } + declared.filter { !stored.contains($0) }
  }

  @Test func everyStoredPropertyIsADeclaredKey() {
    let sections: [(String, [String])] = [
      ("RunConfig", Self.undeclared(RunConfig.self)), ("sid", Self.undeclared(SIDConfig.self)),
      ("contsup", Self.undeclared(ContSupConfig.self)), ("replay", Self.undeclared(ReplayConfig.self)),
      ("dni", Self.undeclared(DNIConfig.self)), ("optimizer", Self.undeclared(OptimizerConfig.self)),
      ("learningRateSchedule", Self.undeclared(LearningRateSchedule.self)),
      ("data", Self.undeclared(DataConfig.self)), ("data.augment", Self.undeclared(AugmentConfig.self)),
      ("training", Self.undeclared(TrainingConfig.self)), ("daemon", Self.undeclared(DaemonConfig.self)),
      ("security", Self.undeclared(SecurityConfig.self)), ("head", Self.undeclared(HeadConfig.self)),
    ]
    for (name, keys) in sections { #expect(keys.isEmpty, "\(name): \(keys) not declared or not stored") }
  }

  /// A key's check runs under its full path, and a bad value in a nested section names it.
  @Test func checksNameTheKeyPath() {
    #expect(configError("daemon: {liveness: 1}\n") == "daemon.liveness: must be at least 2 missed heartbeats")
    #expect(configError("data: {augment: {padding: -1}}\n") == "data.augment.padding: must not be negative")
    #expect(configError("optimizer: {momentum: 1}\n") == "optimizer.momentum: must be in [0, 1)")
    #expect(configError("data: {syntheticTest: 0}\n") == "data.syntheticTest: synthetic sets need samples")
  }

  /// The optimizer's defaults are the config's: one default per key.
  @Test func theOptimizerDefaultsAreTheConfigs() throws {
    let read = try RunConfig.parse(yaml: "optimizer: {kind: sgd}\n")
    #expect(read.optimizer == OptimizerConfig() && read.optimizer.learningRate == 0.05)
    #expect(read.learningRateSchedule == LearningRateSchedule())
  }

  /// The README's config reference names every declared key (by its path or, in a row that
  /// groups a section's keys, by its own name).
  @Test func theReadmeDocumentsEveryKey() throws {
    let readme = try String(contentsOfFile: packageRoot + "/README.md", encoding: .utf8)
    let reference = try #require(readme.components(separatedBy: "## Config reference").last?
      .components(separatedBy: "\n## ").first)
    let paths = RunConfig.keys.flatMap(\.paths)
    #expect(paths.count > 60)
    let missing = paths.filter { path in
      let name = path.split(separator: ".").last.map(String.init) ?? path
      return !reference.contains("`\(path)") && !reference.contains("`\(name)`")
    }
    #expect(missing.isEmpty, "not in the README's config reference: \(missing)")
  }

  /// A section of two model keys, the second added later: at its default it is left out of
  /// the YAML and of the identity, so hashes written before it stay.
  struct Later: ConfigSection {
    var old = 1
    var added = false
    static var keys: [ConfigKey<Self>] {
      [.value("old", \.old, model: .included), .value("added", \.added, model: .included, omitsDefault: true)]
    }
    init() {}
    init(from decoder: any Decoder) throws { try self.init(declaredFrom: decoder) }
    func encode(to encoder: any Encoder) throws { try encodeDeclared(to: encoder) }
  }

  @Test func aKeyAtItsDefaultCanStayOutOfTheHash() {
    var later = Later()
    #expect(later.identityEntries.map(\.0) == ["old"])
    later.added = true
    #expect(later.identityEntries.map(\.0) == ["old", "added"])
  }

  /// Keys outside the model may change when a run goes on; the ones in it may not.
  @Test func modelDifferencesNameTheTopLevelKeys() {
    var other = RunConfig()
    (other.training.epochs, other.optimizer.learningRate, other.dni.learningRate) = (3, 0.2, 1)
    #expect(RunConfig().modelDifferences(from: other).isEmpty)
    (other.training.batchSize, other.optimizer.kind, other.sid.alpha) = (64, .adam, 0.3)
    #expect(RunConfig().modelDifferences(from: other) == ["sid", "optimizer", "training"])
  }
}
