import Data
import Foundation
import Hardware
import Learning
import Linalg
import Telemetry

/// `stagewise bench pipeline`: what removing update locking buys, measured side by side in
/// one run on the same model, data and BLAS threads. Modes: the one-process trainers (e2e and
/// greedy), e2e across processes (one batch in flight), GPipe (M micro-batches), and the
/// local method in `lockstep`, `pipelined` and `replay` — and `pipelined` again with CURVE on
/// every socket, for what encryption costs.
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
    /// The straggler experiment: stage 0's compute stretched by this factor (1: none).
    public var slowdown: Double = 1
    /// Replay's staleness at stage 1 (the replay mode).
    public var replay: ReplayStatistics?
  }

  public var modes = Mode.allCases
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
  /// Straggler factors to re-run the daemon modes with (stage 0 slowed).
  public var stragglerFactors: [Double] = []
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
      throw RuntimeError("\(hiddenLayers) hidden layers do not split evenly into \(stages) stages (use --layers)")
    }
    var config = RunConfig()
    config.name = "\(mode.rawValue)-k\(stages)" + (slowdown > 1 ? "-slow\(slowdown)" : "")
    config.daemon.slowdown = slowdown
    switch mode {
    case .oneProcessE2E, .e2e, .gpipe: (config.method, config.schedule) = (.e2e, .lockstep)
    case .oneProcessGreedy, .lockstep: (config.method, config.schedule) = (.greedy, .lockstep)
    case .pipelined, .pipelinedCurve: (config.method, config.schedule) = (.greedy, .pipelined)
    case .replay: (config.method, config.schedule) = (.greedy, .replay)
    }
    config.daemon.microBatches = mode == .gpipe ? microBatches : 1
    if mode == .pipelinedCurve {  // the launcher makes each worker's key; the scheduler's is made once
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
      StageConfig(layers: (0..<perStage).flatMap { _ in [LayerConfig(.linear, out: width), LayerConfig(.relu)] })
    }
    return config
  }

  /// Cores the daemon's K worker processes use, each with `threads` BLAS threads.
  public func daemonCores(_ k: Int) -> Int { min(k * threads, CPU.cores) }

  func isOneProcess(_ mode: Mode) -> Bool { mode == .oneProcessE2E || mode == .oneProcessGreedy }

  /// PyTorch on the model `mode` trains, at the cores the row used (cached per model).
  mutating func pytorchRate(_ mode: Mode, stages k: Int, threads: Int, cache: inout [String: Double]) -> Double? {
    guard let pytorch, pytorchSkipped == nil, hiddenLayers % k == 0 else { return nil }
    let endToEnd = [Mode.oneProcessE2E, .e2e, .gpipe].contains(mode)
    let model = endToEnd ? "a-e2e" : "a-greedy"
    let key = "\(model)-\(k)-\(threads)"
    if let known = cache[key] { return known }
    let extra = ["--width", "\(width)", "--layers", "\(hiddenLayers)"] + (endToEnd ? [] : ["--stages", "\(k)"])
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
      let runs = modes.map { ($0, 1.0) } + stragglerFactors.flatMap { f in daemonModes.map { ($0, f) } }
      for (mode, slowdown) in runs {
        var row = try measure(mode, stages: k, slowdown: slowdown, log: log)
        if slowdown == 1 { row.pytorchSamplesPerSecond = pytorchRate(mode, stages: k, threads: row.cores, cache: &pytorchCache) }
        if mode == .oneProcessE2E { baseline = row.samplesPerSecond }
        row.speedupOverOneProcessE2E = baseline.map { row.samplesPerSecond / $0 } ?? .nan
        rows.append(row)
        log(String(format: "K=%d %@%@: %.0f samples/s", k, mode.rawValue, slowdown > 1 ? String(format: " (stage 0 × %.1f)", slowdown) : "", row.samplesPerSecond))
      }
    }
    return rows
  }

  func measure(_ mode: Mode, stages k: Int, slowdown: Double, log: @escaping @Sendable (String) -> Void) throws -> Row {
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
        mode: mode, stages: k, samplesPerSecond: report.samplesPerSecond, speedupOverOneProcessE2E: 0, busy: [],
        peakResidentMiB: [peak], megabytesPerSecond: [], testAccuracy: report.test.accuracy)
      (row.threads, row.cores) = (cores, min(cores, CPU.cores))
      return row
    }
    if config.security.curve && !FileManager.default.fileExists(atPath: config.security.schedulerKey) {
      try FileManager.default.createDirectory(atPath: workDirectory, withIntermediateDirectories: true)
      _ = try KeyFile.generate(base: "\(workDirectory)/scheduler")
    }
    let directory = try RunDirectory(path: "\(workDirectory)/\(config.name)", config: config)
    let scheduler = try Scheduler(config: config, directory: directory, train: train, test: test, live: false, log: { _ in }, report: { _ in })
    let outcome = try Launcher(scheduler: scheduler, executable: executable, log: log).run()
    guard let report = outcome.reports.first else { throw RuntimeError("the \(mode.rawValue) run reported no epoch") }
    let trace = try JSONDecoder.stagewise.decode(ChromeTrace.self, from: Data(contentsOf: URL(fileURLWithPath: "\(directory.path)/trace.json")))
    let busy = Self.busyFractions(trace, stages: k)
    let waits = Self.waitStatistics(trace, stages: k)
    let replay = Self.busyFractions(trace, stages: k, spans: ["replay"])
    let straggle = Self.busyFractions(trace, stages: k, spans: ["straggle"])
    try AtomicFile.write(Self.timeline(trace, stages: k, title: "\(config.name)"), to: "\(workDirectory)/timeline-\(config.name).svg")
    let byes = (0..<k).map { outcome.byes[$0] }
    var row = Row(
      mode: mode, stages: k, samplesPerSecond: report.samplesPerSecond, speedupOverOneProcessE2E: 0, busy: busy,
      bubble: Self.bubble(busy),
      theoreticalBubble: mode == .gpipe ? Double(k - 1) / Double(microBatches + k - 1) : nil,
      peakResidentMiB: byes.map { Double($0?.peakResidentBytes ?? 0) / 1_048_576 },
      megabytesPerSecond: byes.map { Double($0?.bytesSent ?? 0) / 1e6 / max(report.seconds, 1e-9) },
      testAccuracy: report.test.accuracy, waitFraction: waits.wait, sendBlockedFraction: waits.blocked,
      waitP50Milliseconds: waits.p50, waitP99Milliseconds: waits.p99, slowdown: slowdown, replay: k > 1 ? byes[1]?.replay : nil)
    row.imbalance = Self.imbalance(busy)
    (row.replayFraction, row.straggleFraction) = (replay, straggle)
    (row.threads, row.cores) = (threads, daemonCores(k))
    return row
  }

  /// Wait and send-blocked fractions and wait percentiles per stage (see `Row`).
  public static func waitStatistics(_ trace: ChromeTrace, stages: Int)
    -> (wait: [Double], blocked: [Double], p50: [Double], p99: [Double])
  {
    guard let (from, to) = steadyWindow(trace, stages: stages) else { return ([], [], [], []) }
    func overlap(_ e: TraceEvent) -> Double { max(0, min(e.ts + (e.dur ?? 0), to) - max(e.ts, from)) }
    var result: (wait: [Double], blocked: [Double], p50: [Double], p99: [Double]) = ([], [], [], [])
    for pid in 1...stages {
      let spans = trace.traceEvents.filter { $0.pid == pid && $0.ph == "X" && $0.ts + ($0.dur ?? 0) > from && $0.ts < to }
      let waits = spans.filter { $0.name == "receive-wait" || $0.name == "gradient-wait" }
      result.wait.append(waits.reduce(0) { $0 + overlap($1) } / (to - from))
      result.blocked.append(spans.filter { $0.name == "send-blocked" }.reduce(0) { $0 + overlap($1) } / (to - from))
      let sorted = waits.map { ($0.dur ?? 0) / 1000 }.sorted()
      func percentile(_ q: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(q * Double(sorted.count)))] }
      result.p50.append(percentile(0.5))
      result.p99.append(percentile(0.99))
    }
    return result
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

  public func timeToAccuracy(target: Double, maxEpochs: Int, oneProcessThreads: Int, stages k: Int, log: @escaping @Sendable (String) -> Void) throws -> [TimeToAccuracy] {
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
        let scheduler = try Scheduler(config: config, directory: directory, train: train, test: test, live: false, log: { _ in }, report: { _ in })
        scheduler.onEpoch = { [unowned scheduler] report in
          epochs += 1
          accuracy = report.test.accuracy
          if let startedAt = scheduler.startedAt { curve.append([(ContinuousClock.now - startedAt).seconds, accuracy]) }
          return report.test.accuracy >= target
        }
        _ = try Launcher(scheduler: scheduler, executable: executable, log: log).run()
        // Wall time from START to the close of the epoch that reached the target.
        if accuracy >= target, let startedAt = scheduler.startedAt, let reachedAt = scheduler.lastEpochAt {
          reached = (reachedAt - startedAt).seconds
        }
      }
      results.append(TimeToAccuracy(
        mode: mode.rawValue, threads: mode == .oneProcessE2E ? oneProcessThreads : threads, seconds: reached, epochs: epochs,
        finalAccuracy: accuracy, curve: curve))
      log(String(format: "%@: %@ after %d epochs (%.2f %%)", mode.rawValue, reached.map { String(format: "%.1f s", $0) } ?? "not reached", epochs, accuracy * 100))
    }
    return results
  }

  /// The schedule's bubble: 1 − mean busy over the stages.
  public static func bubble(_ busy: [Double]) -> Double? {
    busy.isEmpty ? nil : 1 - busy.reduce(0, +) / Double(busy.count)
  }

  /// The bottleneck stage's idle fraction, 1 − max busy.
  public static func imbalance(_ busy: [Double]) -> Double? { busy.max().map { 1 - $0 } }

  /// Fresh compute (forward, backward, update) — or the named spans — over the steady-state
  /// window: from the last stage's first compute to the first stage's last, trimmed by 5 % at
  /// each end.
  public static func busyFractions(_ trace: ChromeTrace, stages: Int, spans names: Set<String> = freshCompute) -> [Double] {
    guard let (from, to) = steadyWindow(trace, stages: stages) else { return [] }
    let spans = trace.traceEvents.filter { $0.ph == "X" && names.contains($0.name) }
    return (1...stages).map { pid in
      spans.filter { $0.pid == pid }.reduce(0.0) { sum, e in
        sum + max(0, min(e.ts + (e.dur ?? 0), to) - max(e.ts, from))
      } / (to - from)
    }
  }

  public static let freshCompute: Set<String> = ["forward", "backward", "update"]

  /// Every span that occupies a stage's core: fresh compute, replay draws, injected straggle.
  static func computeSpans(_ trace: ChromeTrace) -> [TraceEvent] {
    let compute = freshCompute.union(["replay", "straggle"])
    return trace.traceEvents.filter { $0.ph == "X" && compute.contains($0.name) }
  }

  static func steadyWindow(_ trace: ChromeTrace, stages: Int) -> (Double, Double)? {
    let spans = computeSpans(trace)
    guard let lastStart = spans.filter({ $0.pid == stages }).map(\.ts).min(),
      let firstEnd = spans.filter({ $0.pid == 1 }).map({ $0.ts + ($0.dur ?? 0) }).max(), firstEnd > lastStart
    else { return nil }
    let margin = (firstEnd - lastStart) * 0.05
    return (lastStart + margin, firstEnd - margin)
  }

  /// A Gantt chart of ~40 ms… a few batches from the middle of the steady state.
  static func timeline(_ trace: ChromeTrace, stages: Int, title: String) -> String {
    let spans = trace.traceEvents.filter { $0.ph == "X" && $0.pid >= 1 }
    guard let (from, to) = steadyWindow(trace, stages: stages) else { return GanttChart.render([], rows: [], from: 0, to: 1, title: title) }
    let updates = spans.filter { $0.pid == 1 && $0.name == "update" }.map(\.ts).sorted()
    let perBatch = updates.count > 1 ? (updates.last! - updates.first!) / Double(updates.count - 1) : (to - from) / 10
    let middle = (from + to) / 2
    let window = min(6 * perBatch, to - from)
    return GanttChart.render(
      spans.map { ($0.pid, $0.name, $0.ts, $0.dur ?? 0) }, rows: (1...stages).map { ($0, "stage \($0 - 1)") },
      from: middle - window / 2, to: middle + window / 2, title: title)
  }

  /// The Markdown report of `rows`.
  public static func report(_ rows: [Row], microBatches: Int) -> String {
    var text = "| K | mode | cores (threads) | stage 0 slowed | samples/s | PyTorch, same model and cores | × one-process e2e | busy per stage | replay / straggle per stage | waiting for input | send-blocked | wait p50 / p99 ms | bubble (GPipe theory) | imbalance | peak RSS MiB per process | MB/s sent per stage | test acc. | replay draws / stalls / mean age |\n"
    text += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    func list(_ values: [Double], _ format: String) -> String {
      values.isEmpty ? "–" : values.map { String(format: format, $0) }.joined(separator: " / ")
    }
    for row in rows {
      let bubble = row.bubble.map { b in String(format: "%.2f", b) + (row.theoreticalBubble.map { String(format: " (%.2f)", $0) } ?? "") } ?? "–"
      let replay = row.replay.map { String(format: "%d / %d / %.1f", $0.draws, $0.stalls, $0.meanAge) } ?? "–"
      let percentiles = zip(row.waitP50Milliseconds ?? [], row.waitP99Milliseconds ?? []).map { String(format: "%.1f / %.1f", $0, $1) }
      let torch = row.pytorchSamplesPerSecond.map { String(format: "%.0f (ours × %.2f)", $0, row.samplesPerSecond / $0) } ?? "–"
      let extra = zip(row.replayFraction ?? [], row.straggleFraction ?? []).map { String(format: "%.2f / %.2f", $0, $1) }
      text += String(
        format: "| %d | %@ | %d (%d) | %@ | %.0f | %@ | %.2f | %@ | %@ | %@ | %@ | %@ | %@ | %@ | %@ | %@ | %.2f %% | %@ |\n", row.stages,
        row.mode.rawValue, row.cores, row.threads, row.slowdown > 1 ? String(format: "× %.1f", row.slowdown) : "–", row.samplesPerSecond,
        torch, row.speedupOverOneProcessE2E, list(row.busy, "%.2f"), extra.isEmpty ? "–" : extra.joined(separator: ", "),
        list(row.waitFraction ?? [], "%.2f"),
        list(row.sendBlockedFraction ?? [], "%.2f"), percentiles.isEmpty ? "–" : percentiles.joined(separator: ", "),
        bubble, row.imbalance.map { String(format: "%.2f", $0) } ?? "–", list(row.peakResidentMiB, "%.0f"),
        list(row.megabytesPerSecond, "%.0f"), row.testAccuracy * 100, replay)
    }
    for k in Set(rows.map(\.stages)).sorted() {
      let of = { (mode: Mode) in rows.first { $0.stages == k && $0.mode == mode && $0.slowdown == 1 }?.samplesPerSecond ?? .nan }
      // Each ratio whose two modes were measured.
      let ratios = [
        ("pipelined / e2e-distributed", Mode.pipelined, Mode.e2e), ("pipelined / gpipe (M = \(microBatches))", .pipelined, .gpipe),
        ("pipelined / lockstep", .pipelined, .lockstep), ("pipelined / one-process greedy", .pipelined, .oneProcessGreedy),
        ("CURVE's cost: pipelined-curve / pipelined", .pipelinedCurve, .pipelined),
      ].filter { !of($0.1).isNaN && !of($0.2).isNaN }.map { String(format: "%@ = %.2f", $0.0, of($0.1) / of($0.2)) }
      if !ratios.isEmpty { text += "\nK = \(k): " + ratios.joined(separator: ", ") + "\n" }
      if let torch = rows.first(where: { $0.stages == k && $0.mode == .pipelined && $0.slowdown == 1 }), let rate = torch.pytorchSamplesPerSecond {
        text += String(format: "K = %d: pipelined / PyTorch greedy at the same %d cores = %.2f\n", k, torch.cores, torch.samplesPerSecond / rate)
      }
    }
    text += "\nOne-process modes run with as many BLAS threads as the daemon's workers use cores (the cores column); "
      + "busy counts fresh compute only; bubble = 1 − mean busy, imbalance = 1 − the busiest stage's busy.\n"
    return text
  }

  /// Samples/s against K, one line per mode (stage 0 not slowed).
  public static func throughputPlot(_ rows: [Row]) -> String {
    let calm = rows.filter { $0.slowdown == 1 }
    let modes = Mode.allCases.filter { m in calm.contains { $0.mode == m } }
    let series = modes.map { mode in
      SVGChart.Series(name: mode.rawValue, points: calm.filter { $0.mode == mode }.map { (Double($0.stages), $0.samplesPerSecond) })
    }
    let top = (calm.map(\.samplesPerSecond).max() ?? 1) * 1.1
    return SVGChart.render(panels: [SVGChart.Panel(title: "throughput", series: series)], xLabel: "stages (K)", yLabel: "samples/s", yRange: 0...top)
  }

  /// Test accuracy against wall-clock seconds for the time-to-accuracy race.
  public static func accuracyOverTimePlot(_ race: [TimeToAccuracy]) -> String {
    let series = race.map { r in
      SVGChart.Series(name: "\(r.mode) (\(r.threads) thread\(r.threads == 1 ? "" : "s"))", points: r.curve.map { ($0[0], $0[1] * 100) })
    }
    let low = ((race.flatMap { $0.curve.map { $0[1] * 100 } }.min() ?? 0) / 5).rounded(.down) * 5
    return SVGChart.render(panels: [SVGChart.Panel(title: "test accuracy over time", series: series)], xLabel: "seconds", yLabel: "test accuracy (%)", yRange: low...100)
  }

  /// rows as CSV.
  public static func csv(_ rows: [Row]) -> String {
    var text = "stages,mode,slowdown,samples_per_second,speedup_over_one_process_e2e,busy,bubble,theoretical_bubble,peak_rss_mib,mb_per_second,test_accuracy\n"
    for r in rows {
      let join = { (v: [Double]) in v.map { String(format: "%.4f", $0) }.joined(separator: ";") }
      text += "\(r.stages),\(r.mode.rawValue),\(r.slowdown),\(r.samplesPerSecond),\(r.speedupOverOneProcessE2E),\(join(r.busy)),\(r.bubble.map { "\($0)" } ?? ""),\(r.theoreticalBubble.map { "\($0)" } ?? ""),\(join(r.peakResidentMiB)),\(join(r.megabytesPerSecond)),\(r.testAccuracy)\n"
    }
    return text
  }
}
