import Datasets
import Foundation
import Hardware
import Learning
import Linalg
import Memory
import Runtime
import Telemetry

/// `stagewise bench pipeline`: what removing update locking buys, measured side by side in
/// one run on the same model, data and BLAS threads. Modes: the one-process trainers (e2e and
/// greedy), e2e across processes (one batch in flight), GPipe (M micro-batches), and the
/// local method in `lockstep`, `pipelined` and `replay` — and `pipelined` again with CURVE on
/// every socket, for what encryption costs — and the unlocked methods whose feedback flows
/// back, pipelined: DFA (errors from the last stage) and DNI (synthesiser targets).
public struct PipelineBenchmark {
  public enum Mode: String, CaseIterable, Codable, Sendable {
    case oneProcessE2E = "one-process-e2e"
    case oneProcessGreedy = "one-process-greedy"
    case e2e = "e2e-distributed"
    case gpipe
    case lockstep
    case pipelined
    case replay
    case pipelinedCurve = "pipelined-curve"
    case dfa
    case dni
    /// SID pipelined (Benchmarks' network race; its belief travels with the activations).
    case sid
    /// Pipelined with stage `slowStage` run by `replicas` workers (asked for by `--replicas`).
    case replicated = "pipelined-replicas"
  }

  public struct Row: Codable, Sendable {
    public var mode: Mode
    public var stages: Int
    public var samplesPerSecond: Double
    public var speedupOverOneProcessE2E: Double
    /// Fresh compute (forward, backward, update) over the steady-state window, per stage
    /// (daemon modes); replay draws and injected straggler time are counted apart, below.
    public var busy: [Double]
    /// 1 − mean busy over the stages: the share of the stages' time the schedule left idle;
    /// for GPipe next to the theory (K − 1)/(M + K − 1).
    public var bubble: Double?
    public var theoreticalBubble: Double?
    /// The bottleneck stage's idle fraction, 1 − max busy: what remains when the slowest stage
    /// sets the pace (uneven stages, not the schedule).
    public var imbalance: Double? = nil
    /// Per stage: replay draws (DGL's buffer) and injected straggler time, as fractions.
    public var replayFraction: [Double]? = nil
    public var straggleFraction: [Double]? = nil
    /// BLAS threads of the process (one-process modes) or per worker, and the cores in use.
    public var threads: Int = 1
    public var cores: Int = 1
    /// PyTorch on the same model at the same cores (one-process, greedy or e2e as the mode).
    public var pytorchSamplesPerSecond: Double? = nil
    /// Peak resident memory of each worker process, or of the one process, in MiB.
    public var peakResidentMiB: [Double]
    /// Data-plane megabytes per second each stage sent (activations down, gradients up).
    public var megabytesPerSecond: [Double]
    public var testAccuracy: Double
    /// Per stage over the steady-state window: waiting for input (activations or gradients)
    /// and blocked on a full downstream queue, as fractions; and the wait spans' p50 and p99
    /// in milliseconds.
    public var waitFraction: [Double]?
    public var sendBlockedFraction: [Double]?
    public var waitP50Milliseconds: [Double]?
    public var waitP99Milliseconds: [Double]?
    /// The straggler experiment: stage `slowStage`'s compute stretched by this factor (1: none).
    public var slowdown: Double = 1
    public var slowStage: Int? = nil
    /// Replay's staleness at stage 1 (the replay mode).
    public var replay: ReplayStatistics?
    /// Data-plane bytes per stage per sample: downstream over every sample sent on (training
    /// and evaluation), upstream (gradients, errors, synthesiser targets) over training samples.
    public var bytesPerSampleDown: [Double]? = nil
    public var bytesPerSampleUp: [Double]? = nil
    /// DFA and DNI: mean and max batches between a batch going forward and its feedback, per
    /// stage but the last.
    public var meanStaleness: [Double]? = nil
    public var maxStaleness: [Int]? = nil
    /// Workers per stage (the replicated mode), and each one's busy fraction, by stage.
    public var replicas: [Int]? = nil
    public var replicaBusy: [[Double]]? = nil
  }

  public var modes = Mode.allCases.filter { $0 != .replicated }
  public var stageCounts = [2]
  public var hiddenLayers = 4
  public var width = 1024
  public var batchSize = 128
  public var batches = 200
  public var threads = 1
  public var microBatches = 4
  public var maxInFlight = 0
  public var dataPath = FashionMNIST.defaultDirectory
  public var synthetic = false
  /// Straggler factors to re-run the daemon modes with (stage `slowStage` slowed).
  public var stragglerFactors: [Double] = []
  public var slowStage = 0
  /// Workers of stage `slowStage` in the replicated mode.
  public var replicas = 2
  /// BLAS threads of the one-process baselines; nil: as many as the cores the daemon's K
  /// worker processes use, min(K × threads, cores), so the comparison is at equal cores.
  public var oneProcessThreads: Int?
  /// The outside yardstick; nil leaves the PyTorch column out.
  public var pytorch: PyTorchBaseline? = nil
  /// Why the PyTorch column is empty, when it is.
  public private(set) var pytorchSkipped: String?
  public var workDirectory: String
  public var executable = Launcher.currentExecutable

  public init(workDirectory: String) { self.workDirectory = workDirectory }

  /// Model A's hidden layers split evenly over `stages` stages, for `mode`.
  func config(_ mode: Mode, stages: Int, slowdown: Double = 1) throws -> RunConfig {
    guard stages >= 1, hiddenLayers % stages == 0 else {
      throw BenchmarkError(
        "\(hiddenLayers) hidden layers do not split evenly into \(stages) stages (use --layers)")
    }
    var config = RunConfig()
    config.name = Self.runName(mode, stages: stages, slowdown: slowdown)
    (config.daemon.slowdown, config.daemon.slowStage) = (slowdown, slowStage)
    switch mode {
    case .oneProcessE2E, .e2e, .gpipe: (config.method, config.schedule) = (.e2e, .lockstep)
    case .oneProcessGreedy, .lockstep: (config.method, config.schedule) = (.greedy, .lockstep)
    case .pipelined, .pipelinedCurve, .replicated:
      (config.method, config.schedule) = (.greedy, .pipelined)
    case .replay: (config.method, config.schedule) = (.greedy, .replay)
    case .dfa: (config.method, config.schedule) = (.dfa, .pipelined)
    case .dni: (config.method, config.schedule) = (.dni, .pipelined)
    case .sid: (config.method, config.schedule) = (.sid, .pipelined)
    }
    // DFA and DNI diverge on model A at the shared 0.05 (README, Known gaps); NaN feedback is
    // refused, which would leave their stages idle and the figures meaningless.
    if mode == .dfa || mode == .dni { config.optimizer.learningRate = Self.feedbackLearningRate }
    config.daemon.microBatches = mode == .gpipe ? microBatches : 1
    // the launcher makes each worker's key; the scheduler's is made once
    if mode == .pipelinedCurve {
      config.security.curve = true
      config.security.schedulerKey = "\(workDirectory)/scheduler.key"
    }
    if synthetic {
      config.data.source = .synthetic
      config.data.syntheticTrain = batches * batchSize
      config.data.syntheticTest = 200
    } else {
      config.data.path = dataPath
      config.data.trainLimit = batches * batchSize
      config.data.testLimit = 2000
    }
    config.training.epochs = 1
    config.training.batchSize = batchSize
    config.training.threads = threads
    config.daemon.maxInFlight = maxInFlight
    config.learningRateSchedule.kind = .constant
    let perStage = hiddenLayers / stages
    config.stages = (0..<stages).map { _ in
      StageConfig(
        layers: (0..<perStage).flatMap { _ in
          [LayerConfig(.linear, out: width), LayerConfig(.relu)]
        })
    }
    guard config.stages.indices.contains(slowStage) else {
      throw BenchmarkError("--slow-stage \(slowStage) is not a stage of K = \(stages)")
    }
    if mode == .replicated { config.stages[slowStage].replicas = replicas }
    return config
  }

  /// The run's folder name under the work directory.
  public static func runName(_ mode: Mode, stages: Int, slowdown: Double) -> String {
    "\(mode.rawValue)-k\(stages)" + (slowdown > 1 ? "-slow\(slowdown)" : "")
  }

  /// The learning rate of the dfa and dni modes (the others: the config's default, 0.05).
  public static let feedbackLearningRate: Float = 0.01

  /// Cores the daemon's K worker processes use, each with `threads` BLAS threads.
  public func daemonCores(_ k: Int) -> Int { min(k * threads, CPU.cores) }

  func isOneProcess(_ mode: Mode) -> Bool { mode == .oneProcessE2E || mode == .oneProcessGreedy }

  /// PyTorch on the model `mode` trains, at the cores the row used (cached per model).
  mutating func pytorchRate(
    _ mode: Mode, stages k: Int, threads: Int, cache: inout [String: Double]
  ) -> Double? {
    guard let pytorch, pytorchSkipped == nil, hiddenLayers % k == 0 else { return nil }
    let endToEnd = [Mode.oneProcessE2E, .e2e, .gpipe].contains(mode)
    let model = endToEnd ? "a-e2e" : "a-greedy"
    let key = "\(model)-\(k)-\(threads)"
    if let known = cache[key] { return known }
    let extra =
      ["--width", "\(width)", "--layers", "\(hiddenLayers)"]
      + (endToEnd ? [] : ["--stages", "\(k)"])
    switch pytorch.measure(model, threads: threads, batchSize: batchSize, extra: extra) {
    case .success(let m):
      cache[key] = m.samplesPerSecond
      return m.samplesPerSecond
    case .failure(let error):
      pytorchSkipped = error.description
      return nil
    }
  }

  public mutating func run(log: @escaping @Sendable (String) -> Void) throws -> [Row] {
    var rows: [Row] = []
    var pytorchCache: [String: Double] = [:]
    for k in stageCounts {
      var baseline: Double?
      let daemonModes = modes.filter { $0 != .oneProcessE2E && $0 != .oneProcessGreedy }
      let runs =
        modes.map { ($0, 1.0) } + stragglerFactors.flatMap { f in daemonModes.map { ($0, f) } }
      for (mode, slowdown) in runs {
        var row = try measure(mode, stages: k, slowdown: slowdown, log: log)
        if slowdown == 1 {
          row.pytorchSamplesPerSecond = pytorchRate(
            mode, stages: k, threads: row.cores, cache: &pytorchCache)
        }
        if mode == .oneProcessE2E { baseline = row.samplesPerSecond }
        row.speedupOverOneProcessE2E = baseline.map { row.samplesPerSecond / $0 } ?? .nan
        rows.append(row)
        log(
          String(
            format: "K=%d %@%@: %.0f samples/s", k, mode.rawValue,
            slowdown > 1 ? String(format: " (stage %d × %.1f)", slowStage, slowdown) : "",
            row.samplesPerSecond)
        )
      }
    }
    return rows
  }

  func measure(
    _ mode: Mode, stages k: Int, slowdown: Double, log: @escaping @Sendable (String) -> Void
  ) throws -> Row {
    let config = try self.config(mode, stages: k, slowdown: slowdown)
    let (train, test) = try config.loadData()
    if isOneProcess(mode) {
      let cores = oneProcessThreads ?? daemonCores(k)
      BLAS.setThreads(cores)
      defer { BLAS.setThreads(threads) }
      ProcessMemory.resetPeak()
      let trainer = try Trainer(config: config, train: train, test: test)
      let report = trainer.trainEpoch(0)
      let peak = Double(ProcessMemory.peakResidentBytes ?? 0) / 1_048_576
      var row = Row(
        mode: mode, stages: k, samplesPerSecond: report.samplesPerSecond,
        speedupOverOneProcessE2E: 0, busy: [],
        peakResidentMiB: [peak], megabytesPerSecond: [], testAccuracy: report.test.accuracy)
      (row.threads, row.cores) = (cores, min(cores, CPU.cores))
      return row
    }
    if config.security.curve
      && !FileManager.default.fileExists(atPath: config.security.schedulerKey)
    {
      try FileManager.default.createDirectory(
        atPath: workDirectory, withIntermediateDirectories: true)
      _ = try KeyFile.generate(base: "\(workDirectory)/scheduler")
    }
    let directory = try RunDirectory(path: "\(workDirectory)/\(config.name)", config: config)
    let scheduler = try Scheduler(
      config: config, directory: directory, train: train, test: test, live: false, log: { _ in },
      report: { _ in })
    let outcome = try Launcher(scheduler: scheduler, executable: executable, log: log).run()
    guard let report = outcome.reports.first else {
      throw BenchmarkError("the \(mode.rawValue) run reported no epoch")
    }
    let trace = try JSONDecoder.stagewise.decode(
      ChromeTrace.self, from: Data(contentsOf: URL(fileURLWithPath: "\(directory.path)/trace.json"))
    )
    let busy = Self.busyFractions(trace, stages: k)
    let waits = Self.waitStatistics(trace, stages: k)
    let replay = Self.busyFractions(trace, stages: k, spans: ["replay"])
    let straggle = Self.busyFractions(trace, stages: k, spans: ["straggle"])
    try AtomicFile.write(
      Self.timeline(trace, stages: k, title: "\(config.name)"),
      to: "\(workDirectory)/timeline-\(config.name).svg")
    // Per stage: its first replica's word, with every replica's bytes added up.
    let layout = ReplicaLayout(config)
    let byes: [Bye?] = (0..<k).map { stage in
      let slots = layout.slots(ofStage: stage)
      guard var bye = outcome.byes[slots.lowerBound] else { return nil }
      let all = slots.compactMap { outcome.byes[$0] }
      bye.bytesSent = all.reduce(0) { $0 + ($1.bytesSent ?? 0) }
      bye.bytesSentUpstream = all.reduce(0) { $0 + ($1.bytesSentUpstream ?? 0) }
      return bye
    }
    var row = Row(
      mode: mode, stages: k, samplesPerSecond: report.samplesPerSecond, speedupOverOneProcessE2E: 0,
      busy: busy,
      bubble: Self.bubble(busy),
      theoreticalBubble: mode == .gpipe ? Double(k - 1) / Double(microBatches + k - 1) : nil,
      peakResidentMiB: byes.map { Double($0?.peakResidentBytes ?? 0) / 1_048_576 },
      megabytesPerSecond: byes.map { Double($0?.bytesSent ?? 0) / 1e6 / max(report.seconds, 1e-9) },
      testAccuracy: report.test.accuracy, waitFraction: waits.wait,
      sendBlockedFraction: waits.blocked,
      waitP50Milliseconds: waits.p50, waitP99Milliseconds: waits.p99, slowdown: slowdown,
      replay: k > 1 ? byes[1]?.replay : nil)
    row.imbalance = Self.imbalance(busy)
    (row.replayFraction, row.straggleFraction) = (replay, straggle)
    let upstream = byes.map { Double($0?.bytesSentUpstream ?? 0) }
    let trainSamples = Double(train.count)
    let evalSamples = Double(test.count)
    row.bytesPerSampleUp = upstream.map { $0 / trainSamples }
    row.bytesPerSampleDown = zip(byes, upstream).map {
      (Double($0?.bytesSent ?? 0) - $1) / (trainSamples + evalSamples)
    }
    if let feedback = report.feedback {
      (row.meanStaleness, row.maxStaleness) = (
        feedback.map(\.meanStaleness), feedback.map(\.maxStaleness)
      )
    }
    (row.threads, row.cores, row.slowStage) = (threads, daemonCores(layout.slotCount), slowStage)
    if layout.isReplicated {
      row.replicas = layout.counts
      let pids = (0..<layout.slotCount).map { slot in
        let (stage, replica) = layout.place(ofSlot: slot)
        return ReplicaLayout.tracePid(stage: stage, replica: replica)
      }
      // By slot (0 for each when the trace has no steady window).
      let measured = Self.busyFractions(trace, stages: k, pids: pids)
      let busy = measured.isEmpty ? pids.map { _ in 0 } : measured
      row.replicaBusy = (0..<k).map { Array(busy[layout.slots(ofStage: $0)]) }
    }
    return row
  }

  /// Time to a test accuracy on the full training set, for the one-process e2e trainer at
  /// `threads` BLAS threads and for the local method pipelined across K processes (one BLAS
  /// thread each): wall time from the first batch to the end of the first epoch whose
  /// evaluation reaches `target`, evaluations included.
  public struct TimeToAccuracy: Codable, Sendable {
    public var mode: String
    public var threads: Int
    public var seconds: Double?
    public var epochs: Int
    public var finalAccuracy: Double
    /// (wall seconds, test accuracy) after each epoch.
    public var curve: [[Double]]
  }

  public func timeToAccuracy(
    target: Double, maxEpochs: Int, oneProcessThreads: Int, stages k: Int,
    log: @escaping @Sendable (String) -> Void
  ) throws -> [TimeToAccuracy] {
    var results: [TimeToAccuracy] = []
    for mode in [Mode.oneProcessE2E, .pipelined] {
      var config = try self.config(mode, stages: k)
      config.data.trainLimit = nil
      config.data.testLimit = nil
      config.training.epochs = maxEpochs
      config.learningRateSchedule.kind = .cosine
      config.name = "time-to-\(Int(target * 100))-\(mode.rawValue)-k\(k)"
      let (train, test) = try config.loadData()
      let start = ContinuousClock.now
      var reached: Double?
      var epochs = 0
      var accuracy = 0.0
      var curve: [[Double]] = []
      if mode == .oneProcessE2E {
        config.training.threads = oneProcessThreads
        BLAS.setThreads(oneProcessThreads)
        let trainer = try Trainer(config: config, train: train, test: test)
        trainer.run(onEpoch: { report in
          accuracy = report.test.accuracy
          epochs += 1
          curve.append([(ContinuousClock.now - start).seconds, accuracy])
          if accuracy >= target { reached = (ContinuousClock.now - start).seconds }
          return accuracy >= target
        })
        BLAS.setThreads(threads)
      } else {
        let directory = try RunDirectory(path: "\(workDirectory)/\(config.name)", config: config)
        let scheduler = try Scheduler(
          config: config, directory: directory, train: train, test: test, live: false,
          log: { _ in }, report: { _ in })
        scheduler.onEpoch = { [unowned scheduler] report in
          epochs += 1
          accuracy = report.test.accuracy
          if let startedAt = scheduler.startedAt {
            curve.append([(ContinuousClock.now - startedAt).seconds, accuracy])
          }
          return report.test.accuracy >= target
        }
        _ = try Launcher(scheduler: scheduler, executable: executable, log: log).run()
        // Wall time from START to the close of the epoch that reached the target.
        if accuracy >= target, let startedAt = scheduler.startedAt,
          let reachedAt = scheduler.lastEpochAt
        {
          reached = (reachedAt - startedAt).seconds
        }
      }
      results.append(
        TimeToAccuracy(
          mode: mode.rawValue, threads: mode == .oneProcessE2E ? oneProcessThreads : threads,
          seconds: reached, epochs: epochs,
          finalAccuracy: accuracy, curve: curve))
      log(
        String(
          format: "%@: %@ after %d epochs (%.2f %%)", mode.rawValue,
          reached.map { String(format: "%.1f s", $0) } ?? "not reached", epochs, accuracy * 100))
    }
    return results
  }
}
