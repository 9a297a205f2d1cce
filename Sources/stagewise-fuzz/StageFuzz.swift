import ArgumentParser
import Foundation
import Learning
import Runtime
import Wire
import ZMQ

/// Starts a real run (e2e, DFA or cDNI across three worker processes, so the middle stage has a
/// data socket and a gradient socket, both fed by other stages: gradients, errors or synthesiser
/// targets), throws malformed messages at both sockets of that live stage, and checks that every
/// one was rejected, counted by the reason the decoder
/// gives, and that the run went on training and stopped cleanly.
struct StageFuzz: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "stagewise-fuzz",
    abstract:
      "Throw malformed messages at both data sockets of a live stage; check each was rejected and "
      + "counted."
  )

  @Option(help: "Messages to send, split between the stage's data and gradient sockets.")
  var frames = 1_000_000

  @Option(help: "Seed of the message stream (the same seed sends the same messages).")
  var seed: UInt64 = 1

  @Option(help: "The stagewise binary to run (default: the one beside this program).")
  var stagewise: String?

  @Option(help: "Keep the run here instead of a temporary folder.")
  var out: String?

  @Option(help: "Seconds to wait for the stage to count everything after the last message.")
  var drainTimeout = 300

  @Option(
    help:
      ArgumentHelp(
        "The run's method: e2e (gradients come back), dfa (errors), dni or cdni (synthesiser "
          + "targets).")
  )
  var method = "e2e"

  func validate() throws {
    guard frames > 0 else { throw ValidationError("--frames must be positive") }
    guard ["e2e", "dfa", "dni", "cdni"].contains(method) else {
      throw ValidationError("--method must be e2e, dfa, dni or cdni")
    }
  }

  func run() throws {
    let binary =
      stagewise
      ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
      .appendingPathComponent("stagewise").path
    let directory = out ?? NSTemporaryDirectory() + "stagewise-fuzz-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let width = 32
    try Self.config(width: width, method: Method(rawValue: method)!).yaml().write(
      toFile: "\(directory)/job.yaml", atomically: true, encoding: .utf8)
    let runDirectory = "\(directory)/run"
    let launch = try LaunchedRun(
      binary: binary,
      arguments: ["launch", "--config", "\(directory)/job.yaml", "--out", runDirectory],
      logs: directory)
    print("run \(runDirectory) (stagewise log: \(directory)/launch.err)")

    // Stage 1 must have consumed sequence 0 and held (then applied) its gradient.
    let manifest = try launch.waitFor("training to reach its second epoch", seconds: 180) {
      RunManifest.read(runDirectory).flatMap {
        $0.state == "running" && $0.epochsCompleted >= 1 ? $0 : nil
      }
    }
    guard manifest.stages.count == 3, let gradEndpoint = manifest.stages[1].gradEndpoint else {
      throw ValidationError(
        "run.json of \(runDirectory) does not list stage 1 with a gradient socket")
    }
    let baseline = manifest.stages[1].rejected ?? [:]
    guard baseline.isEmpty else {
      throw ValidationError("stage 1 rejected messages before the fuzzing: \(baseline)")
    }

    // Send, alternating sockets, and predict what the decoder alone will say of each.
    let context = try Context()
    let sockets = try [manifest.stages[1].dataEndpoint, gradEndpoint].map { endpoint in
      let socket = try Socket(context, .push)
      try socket.setTimeouts(receiveMilliseconds: 1000, sendMilliseconds: 60_000)
      try socket.setLinger(milliseconds: 60_000)
      try socket.connect(endpoint)
      return socket
    }
    var stream = MalformedFrames(job: manifest.job, width: width, classes: 10, seed: seed)
    var predicted: [String: Int] = [:]
    var decodable = 0
    let start = ContinuousClock.now
    for n in 0..<frames {
      let (message, reason) = stream.next()
      if let reason { predicted[reason, default: 0] += 1 } else { decodable += 1 }
      try sockets[n % 2].send(message)
      if (n + 1) % 100_000 == 0 {
        print(
          "  \(n + 1) sent (\(Int(Double(n + 1) / (ContinuousClock.now - start).seconds)) per "
            + "second)"
        )
      }
    }
    let sendSeconds = (ContinuousClock.now - start).seconds
    print(
      "sent \(frames) messages in \(String(format: "%.1f", sendSeconds)) s: \(decodable) decodable "
        + "(the stage's checks must refuse them), the rest refused by the decoder: "
        + "\(Self.describe(predicted))"
    )

    // The stage's live count reaches run.json at each epoch's end.
    let counted = try launch.waitFor("stage 1 to count \(frames) rejections", seconds: drainTimeout)
    {
      RunManifest.read(runDirectory).flatMap {
        ($0.stages[1].rejected ?? [:]).values.reduce(0, +) >= frames ? $0 : nil
      }
    }
    print(
      "stage 1 counted them all by epoch \(counted.epochsCompleted) "
        + "(\(String(format: "%.1f", (ContinuousClock.now - start).seconds)) s after the first)"
    )

    launch.interrupt()
    let status = launch.wait(seconds: 120)
    let final = try RunManifest.read(runDirectory).orThrow("no run.json after the run stopped")
    var failures: [String] = []
    if status != 0 {
      failures.append(
        "stagewise launch exited with status "
          + "\(status.map(String.init) ?? "none (killed after 120 s)")"
      )
    }
    if final.state != "interrupted" {
      failures.append("the run ended \(final.state), not interrupted: \(final.detail ?? "")")
    }
    if counted.epochsCompleted <= manifest.epochsCompleted {
      failures.append("no epoch completed during the fuzzing")
    }
    let rejected = final.stages[1].rejected ?? [:]
    if rejected.values.reduce(0, +) != frames {
      failures.append(
        "stage 1 counted \(rejected.values.reduce(0, +)) rejections for \(frames) messages: "
          + "\(rejected)"
      )
    }
    for (reason, count) in predicted where rejected[reason] != count {
      failures.append(
        "stage 1 counted \(rejected[reason] ?? 0) '\(reason)', the decoder says \(count)")
    }
    for stage in [0, 2] where !(final.stages[stage].rejected ?? [:]).isEmpty {
      failures.append(
        "stage \(stage), which nothing fuzzed, rejected \(final.stages[stage].rejected!)")
    }
    if !final.rejected.isEmpty { failures.append("the scheduler rejected \(final.rejected)") }
    guard failures.isEmpty else {
      throw ValidationError(
        "fuzzing failed (run kept in \(directory)):\n  " + failures.joined(separator: "\n  "))
    }
    print(
      "passed: \(frames) malformed messages, every one rejected and counted by stage 1 "
        + "(\(Self.describe(rejected))); the run trained on and stopped cleanly"
    )
    if out == nil { try? FileManager.default.removeItem(atPath: directory) }
  }

  /// Three small stages on synthetic data, in lockstep: short epochs, so run.json refreshes often.
  static func config(width: Int, method: Method) -> RunConfig {
    var config = RunConfig()
    config.name = "fuzz"
    config.method = method
    config.schedule = .lockstep
    config.data.source = .synthetic
    config.data.syntheticTrain = 320
    config.data.syntheticTest = 100
    config.training.epochs = 100_000
    config.training.batchSize = 32
    config.training.evalBatchSize = 100
    config.stages = RunConfig.mlpStages(width: width, count: 3)
    // DNI diverges at 0.05 over long runs (README, Known gaps)
    config.optimizer.learningRate = 0.01
    config.daemon.heartbeatMilliseconds = 200
    config.daemon.liveness = 25
    return config
  }

  static func describe(_ counts: [String: Int]) -> String {
    counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
  }
}

extension Optional {
  func orThrow(_ why: String) throws -> Wrapped {
    guard let self else { throw ValidationError(why) }
    return self
  }
}
