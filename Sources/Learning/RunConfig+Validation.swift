import NN

extension RunConfig {
  /// Checks every value that can be checked without data: each key's own check (declared in
  /// `RunConfig.keys`), then the rules that tie keys together. Shapes are checked by
  /// `blueprints`.
  public func validate() throws(ConfigError) {
    func check(_ ok: Bool, _ path: String, _ message: String) throws(ConfigError) {
      if !ok { throw ConfigError(path: path, message) }
    }
    try checkDeclared(path: "")
    for (group, scale) in optimizer.rateScales.sorted(by: { $0.key < $1.key }) {
      try check(
        Self.parameterGroups.contains(group), "optimizer.rateScales.\(group)",
        "is not a parameter group: use \(Self.parameterGroups.joined(separator: ", "))")
      try check(
        scale >= 0 && scale.isFinite, "optimizer.rateScales.\(group)", "must be a finite number ≥ 0"
      )
    }
    try check(
      method != .contsup || optimizer.rateScales["context"] == nil, "optimizer.rateScales.context",
      "ContSup's encoders step at contsup.encoderLearningRateScale: set that one")
    try check(
      (data.mean == nil) == (data.std == nil), data.mean == nil ? "data.mean" : "data.std",
      "give data.mean and data.std together")
    try check(
      data.mean.map { !$0.isEmpty && $0.count == data.std?.count } ?? true, "data.std",
      "needs as many values as data.mean")
    try check(
      !(method == .sid && sid.direction == .reverse && sid.labelSmoothing == 0),
      "sid.labelSmoothing",
      "the reverse KL direction needs smoothed labels (the paper's theory assumes full support): "
        + "set a small ε such as 0.1"
    )
    try check(
      method != .kernel || training.batchSize >= 2, "training.batchSize",
      "the kernel method aligns pairs within a batch: a batch of \(training.batchSize) has one "
        + "class and no pairs; use 2 or more (64+ recommended)"
    )
    try check(
      method != .e2e || schedule != .sequential, "schedule",
      "e2e has no stages to train one after another: use lockstep")
    try check(
      daemon.microBatches >= 1 && daemon.microBatches <= training.batchSize, "daemon.microBatches",
      "must be between 1 and training.batchSize (\(training.batchSize))")
    try check(
      method != .contsup || stages.count >= 2, "contsup.mode",
      "context \(contsup.mode.rawValue) goes to the stages after the first, and this config has "
        + "one stage: use 2 or more, or method greedy"
    )
    try check(
      !method.hasFeedback || (schedule != .sequential && schedule != .replay), "schedule",
      "\(method.rawValue) trains hidden stages on what later stages send back, which "
        + "\(schedule.rawValue) does not run: use pipelined or lockstep"
    )
    try check(
      stages.indices.contains(daemon.slowStage), "daemon.slowStage",
      "must name a stage, 0…\(stages.count - 1)")
    try check(
      method != .e2e || schedule != .replay, "schedule",
      "e2e has no local steps to replay: use lockstep")
    for (k, stage) in stages.enumerated() {
      try check(
        (1...Self.maxReplicas).contains(stage.replicas), "stages[\(k)].replicas",
        "must be between 1 and \(Self.maxReplicas), got \(stage.replicas)")
      try check(
        stage.replicas == 1 || method.routesWithReplicas, "stages[\(k)].replicas",
        "\(method.rawValue) sends gradients or errors back along the whole pipeline, and "
          + "replicas do not route those yet: use a method whose stages learn on their own or "
          + "hear only from the next stage ("
          + Method.allCases.filter(\.routesWithReplicas).map(\.rawValue).joined(separator: ", ")
          + ") or 1 replica")
    }
    if security.curve {
      try check(
        !security.schedulerKey.isEmpty, "security.schedulerKey",
        "CURVE needs the scheduler's key file: make one with `stagewise keygen --out scheduler`")
    }
    for (i, key) in security.allowedWorkerKeys.enumerated() {
      try check(
        Self.isZ85Key(key), "security.allowedWorkerKeys[\(i)]",
        "is not a public key (40 Z85 characters, as `stagewise keygen` prints)")
    }
  }

  /// The most replicas one stage may have.
  public static let maxReplicas = 16

  /// The groups of a stage's parameters that `optimizer.rateScales` may name.
  public static let parameterGroups = ["body", "head", "context"]

  /// Whether `text` looks like a CURVE key in Z85: 40 characters of its alphabet.
  static func isZ85Key(_ text: String) -> Bool {
    let alphabet = Set(
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")
    return text.count == 40 && text.allSatisfy(alphabet.contains)
  }
}
