import Data
import Foundation
import Learning
import Linalg
import Telemetry

/// `stagewise bench pipeline`: the same greedy model, data and BLAS threads trained by the
/// one-process trainer, the daemon in lockstep and the daemon pipelined, one after another in
/// one run; throughput and per-stage busy fractions side by side.
public struct PipelineBenchmark {
  public struct Row: Codable, Sendable {
    public var mode: String
    public var stages: Int
    public var samplesPerSecond: Double
    public var speedupOverOneProcess: Double
    /// Fraction of the steady-state window each stage spent computing (daemon modes).
    public var busy: [Double]
    public var testAccuracy: Double
  }

  public var stageCounts = [2]
  public var hiddenLayers = 4
  public var width = 1024
  public var batchSize = 128
  public var batches = 200
  public var threads = 1
  public var maxInFlight = 0
  public var dataPath = FashionMNIST.defaultDirectory
  public var workDirectory: String
  public var executable = Launcher.currentExecutable

  public init(workDirectory: String) { self.workDirectory = workDirectory }

  /// Model A's hidden layers split evenly over `stages` stages, trained greedily.
  func config(stages: Int, schedule: Schedule) throws -> RunConfig {
    guard stages >= 1, hiddenLayers % stages == 0 else {
      throw RuntimeError("\(hiddenLayers) hidden layers do not split evenly into \(stages) stages (use --layers)")
    }
    var config = RunConfig()
    config.name = "bench-\(schedule.rawValue)-k\(stages)"
    config.method = .greedy
    config.schedule = schedule
    config.data.path = dataPath
    config.data.trainLimit = batches * batchSize
    config.data.testLimit = 2000
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

  public func run(log: @escaping @Sendable (String) -> Void) throws -> [Row] {
    var rows: [Row] = []
    for k in stageCounts {
      let reference = try config(stages: k, schedule: .lockstep)
      let (train, test) = try reference.loadData()
      BLAS.setThreads(threads)
      let trainer = try Trainer(config: reference, train: train, test: test)
      let single = trainer.trainEpoch(0)
      rows.append(Row(mode: "one-process", stages: k, samplesPerSecond: single.samplesPerSecond, speedupOverOneProcess: 1, busy: [], testAccuracy: single.test.accuracy))
      log(String(format: "K=%d one-process: %.0f samples/s", k, single.samplesPerSecond))
      for schedule in [Schedule.lockstep, .pipelined] {
        let config = try self.config(stages: k, schedule: schedule)
        let directory = try RunDirectory(path: "\(workDirectory)/\(config.name)", config: config)
        let scheduler = try Scheduler(
          config: config, directory: directory, train: train, test: test, live: false,
          log: { _ in }, report: { _ in })
        let outcome = try Launcher(scheduler: scheduler, executable: executable, log: log).run()
        guard let report = outcome.reports.first else { throw RuntimeError("the \(schedule.rawValue) run reported no epoch") }
        let busy = try Self.busyFractions(traceAt: "\(directory.path)/trace.json", stages: k)
        rows.append(Row(
          mode: schedule.rawValue, stages: k, samplesPerSecond: report.samplesPerSecond,
          speedupOverOneProcess: report.samplesPerSecond / single.samplesPerSecond, busy: busy,
          testAccuracy: report.test.accuracy))
        log(String(format: "K=%d %@: %.0f samples/s, busy %@", k, schedule.rawValue, report.samplesPerSecond,
                   busy.map { String(format: "%.2f", $0) }.joined(separator: " ")))
      }
    }
    return rows
  }

  /// Each stage's compute time (forward, backward, update) over the steady-state window:
  /// from the moment the last stage first computes to the moment the first stage last
  /// computes a training batch, trimmed by 5 % at each end.
  public static func busyFractions(traceAt path: String, stages: Int) throws -> [Double] {
    let trace = try JSONDecoder().decode(ChromeTrace.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    let compute: Set<String> = ["forward", "backward", "update"]
    let spans = trace.traceEvents.filter { $0.ph == "X" && compute.contains($0.name) }
    guard let lastStart = spans.filter({ $0.pid == stages }).map(\.ts).min(),
      let firstEnd = spans.filter({ $0.pid == 1 }).map({ $0.ts + ($0.dur ?? 0) }).max(), firstEnd > lastStart
    else { return [] }
    let margin = (firstEnd - lastStart) * 0.05
    let (from, to) = (lastStart + margin, firstEnd - margin)
    return (1...stages).map { pid in
      let busy = spans.filter { $0.pid == pid }.reduce(0.0) { sum, e in
        sum + max(0, min(e.ts + (e.dur ?? 0), to) - max(e.ts, from))
      }
      return busy / (to - from)
    }
  }
}
