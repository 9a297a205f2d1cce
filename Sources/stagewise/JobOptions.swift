import ArgumentParser
import Foundation
import Learning
import Runtime

/// Options shared by `train`, `launch` and `scheduler`.
struct JobOptions: ParsableArguments {
  @Option(
    name: .shortAndLong, help: "YAML config; the default trains model A greedily with 4 stages.")
  var config: String?

  @Option(help: "Override training.epochs.")
  var epochs: Int?

  @Option(help: "Override the schedule (lockstep, pipelined).")
  var schedule: String?

  @Option(help: "Override the method (e2e, greedy, sid, contsup, kernel, drtp, dfa, dni, cdni).")
  var method: String?

  @Option(help: "Override training.threads (OpenBLAS threads per process).")
  var threads: Int?

  @Option(
    help:
      "Workers per stage, K=N[,K=N] (stages[K].replicas; launch and scheduler — train runs one).")
  var replicas: String?

  @Option(help: "Run directory (default runs/NAME-TIMESTAMP).")
  var out: String?

  @Option(
    help:
      "Continue a stopped or crashed run from its last epoch checkpoints (launch and scheduler).")
  var resume: String?

  /// The config with overrides applied, validated.
  func resolved() throws -> RunConfig {
    if let resume {
      guard config == nil, out == nil else {
        throw ValidationError(
          "--resume \(resume) continues that run with its own config.yaml: drop --config and --out")
      }
    }
    let configPath = resume.map { "\($0)/config.yaml" } ?? config
    var runConfig =
      try configPath.map { path throws(ConfigError) in try RunConfig.load(path: path) }
      ?? RunConfig()
    if let epochs { runConfig.training.epochs = epochs }
    if let threads { runConfig.training.threads = threads }
    if let schedule { runConfig.schedule = try choice(schedule, flag: "--schedule") }
    if let method { runConfig.method = try choice(method, flag: "--method") }
    if let replicas { try Self.apply(replicas: replicas, to: &runConfig) }
    try runConfig.validate()
    if let resume, let configPath {
      // Training longer, at other rates or threads, goes on; another model does not, and is
      // refused before anything in the run directory is touched.
      let stored = try RunConfig.load(path: configPath)
      let changed = stored.modelDifferences(from: runConfig)
      guard changed.isEmpty else {
        throw RuntimeError(
          "--resume \(resume): these options change the model the run trained "
            + "(\(changed.joined(separator: ", "))), so its checkpoints cannot continue; start a "
            + "new run with --config instead"
        )
      }
    }
    return runConfig
  }

  /// `--replicas 1=2,3=4`: stage 1 with 2 replicas, stage 3 with 4.
  static func apply(replicas text: String, to config: inout RunConfig) throws {
    for item in text.split(separator: ",") {
      let parts = item.split(separator: "=")
      guard parts.count == 2, let k = Int(parts[0]), let n = Int(parts[1]) else {
        throw ValidationError("--replicas \(text): write STAGE=COUNT[,STAGE=COUNT], as in 1=2")
      }
      guard config.stages.indices.contains(k) else {
        throw ValidationError(
          "--replicas \(text): stage \(k) does not exist (stages 0…\(config.stages.count - 1))")
      }
      config.stages[k].replicas = n
    }
  }

  func choice<T: RawRepresentable & CaseIterable>(_ text: String, flag: String) throws -> T
  where T.RawValue == String {
    guard let value = T(rawValue: text) else {
      throw ValidationError(
        "\(flag) \(text) is not one of: \(T.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return value
  }

  /// Loads the data, makes the run directory and the scheduler.
  func makeScheduler(_ stated: RunConfig) throws -> Scheduler {
    let (train, test) = try stated.loadData()
    let runConfig = stated.stating(train.normalisation)
    let point = try resume.map {
      try Scheduler.resumePoint(of: $0, config: runConfig, train: train)
    }
    if let point, let resume {
      for damaged in point.skipped { Console.status("skipped a damaged checkpoint: \(damaged)") }
      Console.status("resuming \(resume) after \(point.description)")
    }
    // Recoveries before the stop stay on the record.
    let earlier = resume.flatMap(RunManifest.read)?.recoveries ?? []
    let directory = try RunDirectory(
      path: resume ?? out ?? RunDirectory.defaultPath(name: runConfig.name), config: runConfig)
    let scheduler = try Scheduler(
      config: runConfig, directory: directory, train: train, test: test, live: Console.isTerminal,
      resume: point,
      log: { Console.status("[scheduler] \($0)") }, report: { Console.print($0) })
    scheduler.recoveries = earlier
    return scheduler
  }
}
