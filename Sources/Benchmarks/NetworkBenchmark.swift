import Foundation
import Learning
import NN
import Runtime

/// `bench network`: the scheduler and each stage on a host of its own (network namespaces),
/// joined by links of a given rate and delay (`NetworkHosts`); every mode side by side under
/// every link profile, model A as `bench pipeline` builds it.
public struct NetworkBenchmark {
  public struct Row: Codable, Sendable {
    public var profile: String
    public var mechanism: String
    public var mode: String
    public var wireFormat: String
    public var stages: Int
    public var samplesPerSecond: Double
    /// Per stage: compute time over the epoch's wall time, and time waiting for input.
    public var busy: [Double]
    public var wait: [Double]
    public var bytesPerSampleDown: [Double]
    public var bytesPerSampleUp: [Double]
    public var testAccuracy: Double
    public var seconds: Double
    /// The race (`targetAccuracy`): seconds from starting the processes to the report of the
    /// first epoch whose test accuracy reached the target (evaluations included), nil if none
    /// did within the epochs; how many epochs that took; the accuracy of the last epoch run.
    public var secondsToTarget: Double?
    public var epochsToTarget: Int?
    public var finalAccuracy: Double?
  }

  public var profiles: [LinkProfile]
  public var modes: [PipelineBenchmark.Mode] = [.pipelined, .sid, .dfa, .dni, .e2e, .gpipe]
  public var wireFormats: [ValueFormat] = [.f32]
  public var stages = 4
  /// Workers per stage in the pipelined-replicas mode (each on a host of its own).
  public var replicas = 2
  /// The race: train on all the data, up to `epochs` epochs (cosine schedule), until the test
  /// accuracy (on the whole test set) reaches this; nil measures `pipeline.batches` batches once.
  public var targetAccuracy: Double?
  public var epochs = 5
  /// Model, data and batches as `bench pipeline` sets them.
  public var pipeline: PipelineBenchmark
  public var executable = Launcher.currentExecutable

  public init(profiles: [LinkProfile], pipeline: PipelineBenchmark) {
    (self.profiles, self.pipeline) = (profiles, pipeline)
  }

  /// Every profile × mode × wire format (formats other than f32 for the pipelined mode only).
  public func run(log: @escaping @Sendable (String) -> Void) throws -> [Row] {
    if let reason = NetworkHosts.unavailable {
      throw BenchmarkError("bench network needs network namespaces: \(reason)")
    }
    NetworkHosts.unblockSignals()
    var rows: [Row] = []
    for profile in profiles {
      for mode in modes {
        for format in mode == .pipelined ? wireFormats : [.f32] {
          log("\(profile.name): \(mode.rawValue) (\(format.rawValue)), K = \(stages)")
          let row = try measure(mode, format: format, on: profile)
          log(
            String(
              format: "  %.0f samples/s, test accuracy %.2f %%", row.samplesPerSecond,
              row.testAccuracy * 100))
          rows.append(row)
        }
      }
    }
    return rows
  }

  /// One run: hosts made, scheduler on host 0, stage k on host k + 1, all torn down after.
  func measure(_ mode: PipelineBenchmark.Mode, format: ValueFormat, on profile: LinkProfile) throws
    -> Row
  {
    var config = try pipeline.config(mode, stages: stages)
    if mode == .replicated {
      for k in config.stages.indices { config.stages[k].replicas = replicas }
    }
    let layout = ReplicaLayout(config)
    config.daemon.wireFormat = format
    if targetAccuracy != nil {
      (config.data.trainLimit, config.data.testLimit) = (nil, nil)
      (config.training.epochs, config.learningRateSchedule.kind) = (epochs, .cosine)
    }
    config.name = "\(profile.name)-\(mode.rawValue)-\(format.rawValue)".replacingOccurrences(
      of: "+", with: "-")
    let directory = "\(pipeline.workDirectory)/\(config.name)"
    try? FileManager.default.removeItem(atPath: directory)
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    try AtomicFile.write(config.yaml(), to: "\(directory)/job.yaml")
    let hosts = try NetworkHosts(
      count: layout.slotCount + 1, profile: profile, executable: executable)
    defer { hosts.tearDown() }
    let port = 5555
    let scheduler = try hosts.start(
      on: 0, executable,
      [
        "scheduler", "--config", "\(directory)/job.yaml", "--bind", hosts.address(0), "--port",
        "\(port)", "--insecure", "--out", "\(directory)/run", "--wait-seconds", "60",
      ], log: "\(directory)/scheduler.log")
    var workers: [Process] = []
    defer { for w in workers { NetworkHosts.kill(w) } }
    for slot in 0..<layout.slotCount {  // a host per worker: per stage, or per replica
      let stage = layout.place(ofSlot: slot).stage
      workers.append(
        try hosts.start(
          on: slot + 1, executable,
          [
            "worker", "--scheduler", "tcp://\(hosts.address(0)):\(port)", "--stage", "\(stage)",
            "--bind", hosts.address(slot + 1), "--insecure", "--wait-seconds", "60",
          ], log: "\(directory)/worker-\(slot).log"))
    }
    let started = Date()
    let deadline = started.addingTimeInterval(targetAccuracy == nil ? 900 : 3600)
    var reached: (seconds: Double, epochs: Int)?
    while scheduler.isRunning && Date() < deadline {
      Thread.sleep(forTimeInterval: 0.1)
      if let target = targetAccuracy,
        let epochs = Self.epochReaching(target, in: "\(directory)/run")
      {
        reached = (Date().timeIntervalSince(started), epochs)  // within 0.1 s of the report
        NetworkHosts.kill(scheduler)  // the race is over; the workers go with the hosts
        break
      }
    }
    if scheduler.isRunning {
      NetworkHosts.kill(scheduler)
      throw BenchmarkError(
        "\(config.name) did not finish within \(Int(deadline.timeIntervalSince(started) / 60)) "
          + "minutes (see \(directory)/scheduler.log)"
      )
    }
    if targetAccuracy != nil {
      var row = try Self.row(
        directory: "\(directory)/run", config: config, mode: mode, profile: profile, trace: false)
      (row.secondsToTarget, row.epochsToTarget) = (reached?.seconds, reached?.epochs)
      row.finalAccuracy = Self.accuracies(in: "\(directory)/run").last
      return row
    }
    guard scheduler.terminationStatus == 0 else {
      let log = try? String(contentsOfFile: "\(directory)/scheduler.log", encoding: .utf8)
      throw BenchmarkError(
        "\(config.name) failed (exit \(scheduler.terminationStatus)): \(log?.suffix(400) ?? "")")
    }
    return try Self.row(directory: "\(directory)/run", config: config, mode: mode, profile: profile)
  }

  /// What a run directory says: the first epoch's rate and accuracy; with `trace`, busy and
  /// waiting from the merged trace and bytes per sample from run.json (a race's run, stopped at
  /// its target, leaves neither: its row says when, not how busy).
  static func row(
    directory: String, config: RunConfig, mode: PipelineBenchmark.Mode, profile: LinkProfile,
    trace withTrace: Bool = true
  ) throws -> Row {
    let reports = try String(contentsOfFile: "\(directory)/metrics.jsonl", encoding: .utf8).split(
      separator: "\n")
    guard let line = reports.first else { throw BenchmarkError("\(directory): no epoch reported") }
    let report = try JSONDecoder.stagewise.decode(EpochReport.self, from: Data(line.utf8))
    let k = config.stages.count
    var row = Row(
      profile: profile.name, mechanism: profile.mechanism, mode: mode.rawValue,
      wireFormat: config.daemon.wireFormat.rawValue, stages: k,
      samplesPerSecond: report.samplesPerSecond, busy: [], wait: [], bytesPerSampleDown: [],
      bytesPerSampleUp: [], testAccuracy: report.test.accuracy,
      seconds: report.seconds)
    guard withTrace else { return row }
    let trace = try JSONDecoder.stagewise.decode(
      ChromeTrace.self, from: Data(contentsOf: URL(fileURLWithPath: "\(directory)/trace.json")))
    let manifest = try RunManifest.read(directory).unwrap(
      or: BenchmarkError("\(directory): no run.json"))
    let trainSamples = Double(config.data.trainLimit ?? config.data.syntheticTrain)
    let evalSamples = Double(config.data.testLimit ?? config.data.syntheticTest)
    // Per stage, over its replicas (busy and waiting: its first replica's).
    let workers = Dictionary(grouping: manifest.stages, by: \.stage)
    let total = { (stage: Int, bytes: (RunManifest.StageEntry) -> Int?) in
      workers[stage, default: []].reduce(0.0) { $0 + Double(bytes($1) ?? 0) }
    }
    let up = (0..<k).map { total($0, \.bytesSentUpstream) }
    (row.busy, row.wait) = (
      PipelineBenchmark.busyFractions(trace, stages: k),
      PipelineBenchmark.waitStatistics(trace, stages: k).wait
    )
    row.bytesPerSampleDown = (0..<k).map {
      (total($0, \.bytesSent) - up[$0]) / (trainSamples + evalSamples)
    }
    row.bytesPerSampleUp = up.map { $0 / trainSamples }
    return row
  }
}

extension NetworkBenchmark {
  /// Every reported epoch's test accuracy so far.
  static func accuracies(in directory: String) -> [Double] {
    let text = (try? String(contentsOfFile: "\(directory)/metrics.jsonl", encoding: .utf8)) ?? ""
    return text.split(separator: "\n").compactMap {
      try? JSONDecoder.stagewise.decode(EpochReport.self, from: Data($0.utf8)).test.accuracy
    }
  }

  /// The epochs it took to reach `target`, once a reported epoch has.
  static func epochReaching(_ target: Double, in directory: String) -> Int? {
    accuracies(in: directory).firstIndex { $0 >= target }.map { $0 + 1 }
  }
}

extension Optional {
  func unwrap(or error: BenchmarkError) throws -> Wrapped {
    guard let self else { throw error }
    return self
  }
}
