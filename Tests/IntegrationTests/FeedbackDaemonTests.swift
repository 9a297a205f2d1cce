import Foundation
import Learning
import Runtime
import TestSupport
import Testing
import Wire

/// DFA and DNI across processes: feedback flows upstream while the forward path never waits
/// for it. The yardstick is e2e on the same slowed pipeline, whose first stage does wait.
@Suite("Feedback methods across processes: no update locking")
struct FeedbackDaemonTests {
  /// The last stage slowed 96 times (at 8, and again at 24, a cDNI stage 1, whose synthesiser
  /// trains with Adam on every target, was at times no faster than it on a loaded 2-core
  /// machine: a CI run in several saw staleness 1; the slowed stage's own compute is tiny).
  /// Stage 1's feedback comes from it under both methods
  /// (DFA's error; DNI's target is the gradient at the last stage's input): a DFA or cDNI
  /// stage 1 keeps sending batches forward while their feedback is outstanding (staleness
  /// ≥ 2), and neither it nor stage 0 ever waits for feedback in training — their waits are
  /// for fresh input. e2e's stages on the same pipeline do wait for gradients.
  @Test(arguments: [Method.dfa, .cdni, .e2e])
  func noStageWaitsForASlowLastStage(method: Method) throws {
    var config = daemonConfig(epochs: 1, trainSamples: 640)
    config.method = method
    // Stages wide enough that compute, not messaging, sets the pace; a linear synthesiser, so
    // a DNI stage 1 (which has one) is not itself slower than the slowed last stage.
    config.stages = RunConfig.mlpStages(width: 256, count: 3)
    config.dni.synthesiser = .linear
    config.daemon.slowStage = 2
    config.daemon.slowdown = 96
    config.daemon.maxInFlight = 6
    let (dir, path) = try prepare(config)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let result = try ChildProcess.stagewise(["launch", "--config", path, "--out", "\(dir)/run"], timeout: .seconds(180))
    #expect(result.status == 0, "\(result.stderr)")
    let trace = try JSONDecoder.stagewise.decode(ChromeTrace.self, from: Data(contentsOf: URL(fileURLWithPath: "\(dir)/run/trace.json")))
    for stage in [0, 1] {
      let spans = trace.traceEvents.filter { $0.pid == stage + 1 && $0.ph == "X" }
      let gradientWait = spans.filter { $0.name == "gradient-wait" }.reduce(0.0) { $0 + ($1.dur ?? 0) }
      if method == .e2e {
        #expect(gradientWait > 0, "e2e's stage \(stage) waits for its gradients")
      } else {
        #expect(gradientWait == 0, "\(method): stage \(stage) waited \(gradientWait) µs for feedback")
        #expect(spans.contains { $0.name == "receive-wait" } && spans.contains { $0.name == "forward" })
      }
    }
    guard method != .e2e else { return }
    let report = try #require(metricsLines("\(dir)/run").last)
    let feedback = try #require(report.feedback?.first { $0.stage == 1 })
    let batches = 640 / config.training.batchSize
    #expect(feedback.applied == batches && feedback.stale == 0, "\(feedback)")
    #expect(feedback.maxStaleness >= 2, "stage 1 sent at most \(feedback.maxStaleness) batches on before a feedback came: \(feedback)")
    #expect(report.accounting?.batchesTrained == [batches, batches, batches])
  }

  /// DNI with the first two stages on two replicas each: every target goes back to the
  /// replica that sent the batch, so every batch's target is applied where it is awaited and
  /// none is stale; the accounting is exact.
  @Test func dniTargetsGoBackToTheReplicaThatSentTheBatch() throws {
    var config = daemonConfig(epochs: 2, trainSamples: 640)
    config.method = .dni
    config.dni.synthesiser = .linear
    config.optimizer.learningRate = 0.01
    config.stages[0].replicas = 2
    config.stages[1].replicas = 2
    let (dir, path) = try prepare(config)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let result = try ChildProcess.stagewise(["launch", "--config", path, "--out", "\(dir)/run"], timeout: .seconds(180))
    #expect(result.status == 0, "\(result.stderr)")
    let batches = 640 / config.training.batchSize
    for report in metricsLines("\(dir)/run") {
      // Every stage trained every batch; the last scored every sample (DNI's hidden stages
      // have no head).
      let accounting = try #require(report.accounting)
      #expect(accounting.batchesTrained == [batches, batches, batches], "\(accounting)")
      #expect(accounting.evalSamplesScored.last == accounting.evalSamplesFed, "\(accounting)")
      for stage in [0, 1] {
        let feedback = try #require(report.feedback?.first { $0.stage == stage })
        #expect(feedback.applied == batches && feedback.stale == 0, "stage \(stage): \(feedback)")
      }
    }
    let manifest = try #require(readManifest("\(dir)/run"))
    #expect(manifest.rejected.isEmpty && manifest.stages.allSatisfy { $0.rejected?.isEmpty ?? true })
  }

  /// Malformed feedback into a DFA or cDNI first stage's gradient socket — garbage, the wrong
  /// kind, the other method's feedback, wrong batch sizes and widths, values that are not
  /// finite, sequences never sent, another job — is rejected and counted; the run finishes
  /// with every batch's real feedback applied and none stale.
  @Test(arguments: [Method.dfa, .cdni])
  func malformedFeedbackIsRejectedCountedAndTheRunFinishes(method: Method) throws {
    var config = daemonConfig(epochs: 8, trainSamples: 1200)
    config.method = method
    config.optimizer.learningRate = 0.01  // DNI at 0.05 diverges within these 8 epochs (README, Known gaps)
    let (dir, launch, manifest, context) = try startedRun(config)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let socket = try pushSocket(context, to: try #require(manifest.stages[0].gradEndpoint))
    let (kind, role, width) = method == .dfa ? (Kind.feedback, Role.error, 10) : (.grad, .gradient, 32)
    let (otherKind, otherRole) = method == .dfa ? (Kind.grad, Role.gradient) : (.feedback, .error)
    func message(_ kind: Kind, _ role: Role, rows: Int, width: Int, value: Float = 0, sequence: UInt64, job: UInt32 = manifest.job) -> [[UInt8]] {
      var m = Message(kind: kind, tensors: [WireTensor(role: role, shape: [rows, width], floats: [Float](repeating: value, count: rows * width))])
      (m.job, m.sequence) = (job, sequence)
      return m.encode()
    }
    var fuzz: [[[UInt8]]] = [[[1, 2, 3]], { var m = smallTrainMessage; m.job = manifest.job; return m.encode() }()]
    for sequence in UInt64(0)..<40 {
      fuzz.append(message(kind, role, rows: 3, width: width, sequence: sequence))  // a batch of another size
      fuzz.append(message(kind, role, rows: 32, width: width + 1, sequence: sequence))  // another width
      fuzz.append(message(kind, role, rows: 32, width: width, value: .nan, sequence: sequence))  // not finite
      fuzz.append(message(otherKind, otherRole, rows: 32, width: width, sequence: sequence))  // the other method's
    }
    fuzz.append(message(kind, role, rows: 32, width: width, sequence: 1 << 40))  // never sent
    fuzz.append(message(kind, role, rows: 32, width: width, sequence: 0, job: manifest.job &+ 1))  // another job
    for frames in fuzz { try socket.send(frames) }

    let result = launch.wait(timeout: .seconds(240))
    #expect(result.status == 0, "\(result.stderr)")
    let reports = metricsLines("\(dir)/run")
    #expect(reports.count == 8)
    let final = try #require(readManifest("\(dir)/run"))
    #expect(final.state == "finished")
    #expect((final.stages[0].rejected ?? [:]).values.reduce(0, +) == fuzz.count, "\(final.stages[0].rejected ?? [:])")
    for report in reports {
      #expect(report.accounting?.batchesTrained.allSatisfy { $0 == report.accounting?.batchesFed } == true, "\(String(describing: report.accounting))")
      #expect(report.feedback?.allSatisfy { $0.stale == 0 } == true, "\(String(describing: report.feedback))")
    }
  }

  /// A lockstep DFA run whose last stage diverges (a learning rate of 10⁶): its errors are NaN,
  /// refused by every earlier stage, so a batch's feedback never comes. Each stage gives up on
  /// it after the liveness window, counting it stale, and the run finishes instead of hanging.
  @Test func aLockstepStageGivesUpOnFeedbackThatNeverComes() throws {
    var config = daemonConfig(epochs: 1, schedule: .lockstep, trainSamples: 640)
    config.method = .dfa
    config.optimizer.learningRate = 1e6
    (config.daemon.heartbeatMilliseconds, config.daemon.liveness) = (100, 3)
    let (dir, path) = try prepare(config)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let result = try ChildProcess.stagewise(["launch", "--config", path, "--out", "\(dir)/run"], timeout: .seconds(120))
    #expect(result.status == 0 && !result.timedOut, "\(result.stderr)")
    let report = try #require(metricsLines("\(dir)/run").last)
    let final = try #require(readManifest("\(dir)/run"))
    let batches = 640 / config.training.batchSize
    for stage in [0, 1] {
      let feedback = try #require(report.feedback?.first { $0.stage == stage })
      #expect(feedback.stale > 0 && feedback.applied + feedback.stale == batches, "\(feedback)")
      #expect(final.stages[stage].rejected?["unexpected"] == feedback.stale, "every stale batch's error was refused as not finite")
    }
  }
}
