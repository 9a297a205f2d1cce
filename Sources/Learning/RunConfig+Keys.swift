import NN

/// Every config key, declared once: name, check and whether it enters the model hash (see
/// `ConfigKey`); the defaults are the sections' `init()`. The order here is the order of the
/// YAML a run writes, and of the model identity, whose hashes checkpoints hold: keep it.
extension RunConfig: ConfigSection {
  static var keys: [ConfigKey<Self>] {
    [
      .value("name", \.name), .value("seed", \.seed, model: .included),
      .choice("method", \.method, model: .included), .choice("schedule", \.schedule),
      .value("stages", \.stages, model: .includedAs { $0.stages.map(\.model) }) {
        $0.isEmpty ? "needs at least one stage" : nil
      },
      .section("sid", \.sid, model: .included), .section("contsup", \.contsup, model: .included),
      .section("replay", \.replay),
      .section("dni", \.dni, model: .includedWhen { $0.method == .dni || $0.method == .cdni }),
      .section("optimizer", \.optimizer, model: .flattened),
      .section("learningRateSchedule", \.learningRateSchedule),
      .section("data", \.data, model: .flattened),
      .section("training", \.training, model: .flattened),
      .section("daemon", \.daemon), .section("security", \.security),
      .section("replicas", \.replicas, omitsDefault: true),
    ]
  }

  public init(from decoder: any Decoder) throws { try self.init(declaredFrom: decoder) }
  public func encode(to encoder: any Encoder) throws { try encodeDeclared(to: encoder) }
}

extension SIDConfig: ConfigSection {
  static var keys: [ConfigKey<Self>] {
    [
      .value("alpha", \.alpha, model: .included) {
        (0...1).contains($0) ? nil : "must be in [0, 1], got \($0)"
      },
      .value("labelSmoothing", \.labelSmoothing, model: .included, check: inUnitInterval),
      .choice("direction", \.direction, model: .included),
      .value("beliefInput", \.beliefInput, model: .included),
    ]
  }

  public init(from decoder: any Decoder) throws { try self.init(declaredFrom: decoder) }
  public func encode(to encoder: any Encoder) throws { try encodeDeclared(to: encoder) }
}

extension ContSupConfig: ConfigSection {
  static var keys: [ConfigKey<Self>] {
    [
      .choice("mode", \.mode, model: .included),
      .value(
        "encoderLearningRateScale", \.encoderLearningRateScale, model: .included,
        check: notNegative()),
    ]
  }

  public init(from decoder: any Decoder) throws { try self.init(declaredFrom: decoder) }
  public func encode(to encoder: any Encoder) throws { try encodeDeclared(to: encoder) }
}

extension ReplayConfig: ConfigSection {
  static var keys: [ConfigKey<Self>] {
    [
      .value("buffer", \.buffer) { $0 >= 1 ? nil : "must hold at least 1 batch" },
      .value("maxReuse", \.maxReuse, check: notNegative(" (0: no cap)")),
    ]
  }

  public init(from decoder: any Decoder) throws { try self.init(declaredFrom: decoder) }
  public func encode(to encoder: any Encoder) throws { try encodeDeclared(to: encoder) }
}

extension ReplicaConfig: ConfigSection {
  static var keys: [ConfigKey<Self>] {
    [.value("averageEvery", \.averageEvery, check: notNegative(" (0: only at markers)"))]
  }

  public init(from decoder: any Decoder) throws { try self.init(declaredFrom: decoder) }
  public func encode(to encoder: any Encoder) throws { try encodeDeclared(to: encoder) }
}

extension DNIConfig: ConfigSection {
  static var keys: [ConfigKey<Self>] {
    [
      .choice("synthesiser", \.synthesiser, model: .included),
      .value("hidden", \.hidden, model: .included, check: atLeast(1)),
      .value("auxiliaryLoss", \.auxiliaryLoss, model: .included),
      .choice("optimizer", \.optimizer, model: .included),
      // The rate may change; the identity has carried it as 0 since model hashes began.
      .value("learningRate", \.learningRate, model: .fixed(Float(0))) {
        $0 >= 0 && $0.isFinite ? nil : "must be a finite number ≥ 0 (0 freezes the synthesisers)"
      },
    ]
  }

  public init(from decoder: any Decoder) throws { try self.init(declaredFrom: decoder) }
  public func encode(to encoder: any Encoder) throws { try encodeDeclared(to: encoder) }
}

extension OptimizerConfig: ConfigSection {
  static var keys: [ConfigKey<Self>] {
    [
      .choice("kind", \.kind, model: .named("optimizer")),
      .value("learningRate", \.learningRate, check: positive),
      .value("momentum", \.momentum, check: inUnitInterval), .value("nesterov", \.nesterov),
      .value("weightDecay", \.weightDecay, check: notNegative()),
      .value("beta1", \.beta1, check: inUnitInterval),
      .value("beta2", \.beta2, check: inUnitInterval),
      .value("epsilon", \.epsilon, check: positive),
      .value("rateScales", \.rateScales, omitsDefault: true),
    ]
  }

  public init(from decoder: any Decoder) throws { try self.init(declaredFrom: decoder) }
  public func encode(to encoder: any Encoder) throws { try encodeDeclared(to: encoder) }
}

extension LearningRateSchedule: ConfigSection, Codable {
  static var keys: [ConfigKey<Self>] {
    [
      .choice("kind", \.kind), .value("stepEpochs", \.stepEpochs, check: atLeast(1)),
      .value("gamma", \.gamma, check: positive), .value("minimum", \.minimum),
      .value("warmupEpochs", \.warmupEpochs, check: notNegative()),
    ]
  }

  public init(from decoder: any Decoder) throws { try self.init(declaredFrom: decoder) }
  public func encode(to encoder: any Encoder) throws { try encodeDeclared(to: encoder) }
}

extension DataConfig: ConfigSection {
  static var keys: [ConfigKey<Self>] {
    [
      .choice("source", \.source, model: .named("data")), .value("path", \.path),
      .optional("trainLimit", \.trainLimit, model: .included, check: atLeast(1)),
      .optional("testLimit", \.testLimit, check: atLeast(1)),
      .value("syntheticTrain", \.syntheticTrain, model: .included, check: hasSamples),
      .value("syntheticTest", \.syntheticTest, check: hasSamples),
      .value("syntheticSide", \.syntheticSide, model: .included, check: atLeast(4)),
      .section("augment", \.augment),
      .optional("classes", \.classes) { $0 >= 2 ? nil : "a classifier needs at least 2 classes" },
      .optional("mean", \.mean),
      .optional("std", \.std) { $0.allSatisfy { $0 > 0 } ? nil : "every value must be positive" },
    ]
  }

  static func hasSamples(_ count: Int) -> String? {
    count >= 1 ? nil : "synthetic sets need samples"
  }

  public init(from decoder: any Decoder) throws { try self.init(declaredFrom: decoder) }
  public func encode(to encoder: any Encoder) throws { try encodeDeclared(to: encoder) }
}

extension AugmentConfig: ConfigSection {
  static var keys: [ConfigKey<Self>] {
    [.value("padding", \.padding, check: notNegative()), .value("flip", \.flip)]
  }

  public init(from decoder: any Decoder) throws { try self.init(declaredFrom: decoder) }
  public func encode(to encoder: any Encoder) throws { try encodeDeclared(to: encoder) }
}

extension TrainingConfig: ConfigSection {
  static var keys: [ConfigKey<Self>] {
    [
      .value("epochs", \.epochs) { $0 >= 1 ? nil : "must be at least 1, got \($0)" },
      .value("batchSize", \.batchSize, model: .included) {
        $0 >= 1 ? nil : "must be at least 1, got \($0)"
      },
      .value("evalBatchSize", \.evalBatchSize, check: atLeast(1)),
      .value("threads", \.threads, check: atLeast(1)),
    ]
  }

  public init(from decoder: any Decoder) throws { try self.init(declaredFrom: decoder) }
  public func encode(to encoder: any Encoder) throws { try encodeDeclared(to: encoder) }
}

extension DaemonConfig: ConfigSection {
  static var keys: [ConfigKey<Self>] {
    [
      .value("maxInFlight", \.maxInFlight, check: notNegative(" (0 picks 2 × stages)")),
      .value("highWaterMark", \.highWaterMark, check: atLeast(1)),
      .value("heartbeatMilliseconds", \.heartbeatMilliseconds, check: atLeast(10)),
      .value("liveness", \.liveness) { $0 >= 2 ? nil : "must be at least 2 missed heartbeats" },
      .value("bind", \.bind) {
        !$0.isEmpty && !$0.contains("/") ? nil : "must be an interface address such as 127.0.0.1"
      },
      .value("controlPort", \.controlPort) {
        (0...65535).contains($0) ? nil : "must be a TCP port (0 picks a free one)"
      },
      .value("statsMilliseconds", \.statsMilliseconds),
      .value("restarts", \.restarts, check: notNegative()),
      .value(
        "checkpointEverySteps", \.checkpointEverySteps,
        check: notNegative(" (0: at epoch ends only)")),
      .value("microBatches", \.microBatches), .value("slowStage", \.slowStage),
      .choice("wireFormat", \.wireFormat),
      .value("slowdown", \.slowdown) { $0 >= 1 ? nil : "must be at least 1 (1: no slowdown)" },
    ]
  }

  public init(from decoder: any Decoder) throws { try self.init(declaredFrom: decoder) }
  public func encode(to encoder: any Encoder) throws { try encodeDeclared(to: encoder) }
}

extension SecurityConfig: ConfigSection {
  static var keys: [ConfigKey<Self>] {
    [
      .value("curve", \.curve), .value("schedulerKey", \.schedulerKey),
      .value("allowedWorkerKeys", \.allowedWorkerKeys),
    ]
  }

  public init(from decoder: any Decoder) throws { try self.init(declaredFrom: decoder) }
  public func encode(to encoder: any Encoder) throws { try encodeDeclared(to: encoder) }
}

extension HeadConfig: ConfigSection {
  static var keys: [ConfigKey<Self>] {
    [
      .choice("type", \.type), .value("hidden", \.hidden),
      // Written only when set: heads from before it keep their model hash.
      .value("batchnorm", \.batchnorm, omitsDefault: true),
    ]
  }

  public init(from decoder: any Decoder) throws { try self.init(declaredFrom: decoder) }
  public func encode(to encoder: any Encoder) throws { try encodeDeclared(to: encoder) }
}

/// The checks most keys share.
private func atLeast(_ least: Int) -> (Int) -> String? {
  { $0 >= least ? nil : "must be at least \(least)" }
}

private func notNegative<T: Comparable & ExpressibleByIntegerLiteral>(_ note: String = "") -> (T) ->
  String?
{
  { $0 >= 0 ? nil : "must not be negative\(note)" }
}

private func positive<T: Comparable & ExpressibleByIntegerLiteral>(_ value: T) -> String? {
  value > 0 ? nil : "must be positive"
}

private func inUnitInterval(_ value: Float) -> String? {
  (0..<1).contains(value) ? nil : "must be in [0, 1)"
}
