import Foundation
import Learning
import Runtime
import TestSupport
import Testing
import Wire
import ZMQ

/// Stage replicas as real processes under `launch`: batches routed among them, markers lined
/// up, their changes summed into one model, forged replica messages refused.
@Suite("Stage replicas: real processes on loopback", .serialized)
struct ReplicaDaemonTests {
  /// Three stages, the first two with two replicas each: the feed routes among stage 0's
  /// replicas, each of them among stage 1's, stage 1 lines up two copies of every marker and
  /// the sink two more. Every batch is trained once by every stage, every evaluation sample
  /// scored, one checkpoint per stage is written and `eval` on it gives the run's accuracy.
  @Test(arguments: [false, true])
  func replicatedStagesTrainEveryBatchOnceAndKeepOneModel(curve: Bool) throws {
    var config = daemonConfig(epochs: 2)
    config.stages[0].replicas = 2
    config.stages[1].replicas = 2
    config.replicas.averageEvery = 2
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    if curve {
      _ = try KeyFile.generate(base: "\(dir)/scheduler")
      config.security.curve = true
      config.security.schedulerKey = "\(dir)/scheduler.key"
    }
    let path = "\(dir)/job.yaml"
    try config.yaml().write(toFile: path, atomically: true, encoding: .utf8)
    let result = try ChildProcess.stagewise(
      ["launch", "--config", path, "--out", "\(dir)/run"], timeout: .seconds(180))
    #expect(result.status == 0, "\(result.stderr)")
    let reports = metricsLines("\(dir)/run")
    #expect(reports.count == 2)
    for report in reports {
      expectNothingLost(report)
      // Each replica's share of its stage, in samples/s: every one took some.
      let shares = try #require(report.replicaSamplesPerSecond)
      #expect(shares.map(\.count) == [2, 2, 1] && shares.joined().allSatisfy { $0 > 0 }, "\(shares)")
    }
    #expect(reports.last!.test.accuracy > 0.5, "well above the 10 % of chance")
    let manifest = try #require(readManifest("\(dir)/run"))
    #expect(manifest.state == "finished" && manifest.stages.count == 5)
    let places = manifest.stages.map { "\($0.stage).\($0.replica ?? -1)" }.sorted()
    #expect(places == ["0.0", "0.1", "1.0", "1.1", "2.-1"])
    for worker in manifest.stages {
      // Each replica was sent batches and handed them on (every one of them took some).
      #expect((worker.bytesSent ?? 0) > 0, "stage \(worker.stage) replica \(worker.replica ?? 0)")
      #expect(worker.rejected?.isEmpty ?? true, "\(worker.rejected ?? [:])")
      #expect(!processExists(worker.pid), "worker \(worker.pid) is gone")
    }
    #expect(manifest.rejected.isEmpty, "\(manifest.rejected)")
    let final = result.stdout.split(separator: "\n").last { $0.hasPrefix("final test accuracy") }!
    let accuracy = final.split(separator: " ")[3].dropLast()  // "NN.NN%;"
    let evaluated = try ChildProcess.stagewise(["eval", "\(dir)/run"])
    #expect(evaluated.status == 0, "\(evaluated.stderr)")
    #expect(evaluated.stdout.contains("test accuracy \(accuracy.dropLast()) %"), "\(evaluated.stdout)")
  }

  /// A worker started with no --stage after epoch 1 of a running job, whose stage 1 is slowed
  /// 3×, joins it as a second replica of stage 1 within 2 s, at the next cut: the run finishes
  /// with every epoch's accounting exact, no batch trained twice, and the joiner took batches.
  /// Under CURVE the joiner brings a key on the job's allow-list, and its neighbours trust it.
  @Test(arguments: [false, true])
  func aWorkerStartedDuringTheRunJoinsTheSlowestStage(curve: Bool) throws {
    var config = daemonConfig(epochs: 6, trainSamples: 1200)
    (config.daemon.checkpointEverySteps, config.daemon.statsMilliseconds) = (2, 100)
    (config.daemon.slowStage, config.daemon.slowdown) = (1, 3)
    let keys = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: keys) }
    var credentials: [String] = []
    if curve {
      _ = try KeyFile.generate(base: "\(keys)/scheduler")
      let joiner = try KeyFile.generate(base: "\(keys)/joiner")
      config.security.curve = true
      config.security.schedulerKey = "\(keys)/scheduler.key"
      config.security.allowedWorkerKeys = [joiner.publicKey]
      credentials = ["--key", "\(keys)/joiner.key", "--scheduler-key", "\(keys)/scheduler.pub"]
    }
    let (dir, launch, manifest, _) = try startedRun(config)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    #expect(eventually(timeout: .seconds(120)) { metricsLines("\(dir)/run").count >= 1 })
    let started = ContinuousClock.now
    let joiner = try ChildProcess(stagewise: ["worker", "--scheduler", manifest.control] + credentials)
    #expect(eventually(timeout: .seconds(30)) {
      let now = readManifest("\(dir)/run")
      return now?.state == "running" && now?.stages.count == 4  // three stages, four workers
    })
    let joined = ContinuousClock.now - started
    #expect(joined < .seconds(2), "joined after \(joined)")
    let result = launch.wait(timeout: .seconds(180))
    #expect(result.status == 0, "\(result.stdout.suffix(3000))\n\(result.stderr.suffix(3000))")
    let joinerResult = joiner.wait(timeout: .seconds(30))
    #expect(joinerResult.status == 0, "\(joinerResult.stderr.suffix(2000))")
    let output = result.stdout + result.stderr
    #expect(output.contains("joins stage 1 as replica 1 (least capacity"), "\(output)")
    #expect(!output.contains("to train again"), "nothing rolled back")
    let after = try finishedRun(dir, epochs: 6)
    #expect(after.recoveries == nil)
    #expect(after.stages.map { "\($0.stage).\($0.replica ?? -1)" }.sorted() == ["0.-1", "1.0", "1.1", "2.-1"])
    for worker in after.stages {
      #expect((worker.bytesSent ?? 0) > 0 && worker.rejected?.isEmpty ?? true, "\(worker)")
    }
    // Only what the retired job still had on its way (live figures) may be refused, as stale.
    #expect(after.rejected.keys.allSatisfy { $0 == "stale-job" }, "\(after.rejected)")
  }

  /// The run in `dir` finished all `epochs`, each with nothing lost; its run.json.
  func finishedRun(_ dir: String, epochs: Int, headless: Bool = false) throws -> RunManifest {
    let reports = metricsLines("\(dir)/run")
    #expect(reports.map(\.epoch) == Array(0..<epochs))
    for report in reports { expectNothingLost(report, headless: headless) }
    let manifest = try #require(readManifest("\(dir)/run"))
    #expect(manifest.state == "finished")
    return manifest
  }

  /// A run under `launch` with stage `stage` (1 unless said) on two replicas (checkpoints
  /// every 2 steps), once its first epoch is reported; and that stage's second replica.
  func stageOneOnTwoReplicasAfterEpochOne(epochs: Int, stage: Int = 1, method: Method = .greedy)
    throws -> (
      dir: String, launch: ChildProcess, manifest: RunManifest, replica: RunManifest.StageEntry
    )
  {
    var config = daemonConfig(epochs: epochs, trainSamples: 1200)
    if method != .greedy {
      (config.method, config.dni.synthesiser, config.optimizer.learningRate) = (method, .linear, 0.01)
    }
    config.daemon.checkpointEverySteps = 2
    config.stages[stage].replicas = 2
    let (dir, launch, manifest, _) = try startedRun(config)
    #expect(eventually(timeout: .seconds(120)) { metricsLines("\(dir)/run").count >= 1 })
    let replica = try #require(manifest.stages.first { $0.stage == stage && $0.replica == 1 })
    return (dir, launch, manifest, replica)
  }

  /// kill -9 to a replica of the first stage (the feed sends what it held to the other and
  /// counts what it took) or of the last (the sink stops waiting for its markers): the job
  /// goes on without it to the end, nothing rolled back, every epoch's accounting exact.
  /// Under DNI too, with stage 1's targets outstanding at the dead replica: those it awaited
  /// are given up on (stale), the rest go on.
  @Test(arguments: [(0, Method.greedy), (2, .greedy), (1, .dni)])
  func aKilledFirstOrLastReplicaIsLeftOut(stage: Int, method: Method) throws {
    let (dir, launch, _, victim) = try stageOneOnTwoReplicasAfterEpochOne(
      epochs: 5, stage: stage, method: method)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    kill(victim.pid, SIGKILL)
    let result = launch.wait(timeout: .seconds(180))
    #expect(result.status == 0, "\(result.stderr)")
    let output = result.stdout + result.stderr
    #expect(output.contains("the job goes on with 1 replica of stage \(stage)"), "\(output)")
    #expect(!output.contains("to train again"), "no rollback")
    let after = try finishedRun(dir, epochs: 5, headless: method == .dni)
    #expect(after.recoveries?.count == 1 && after.recoveries?.first?.rolledBack == false)
  }

  /// SIGTERM to one of stage 1's two replicas after epoch 1: it asks to leave, trains on to
  /// the next cut and exits there; the run goes on with one replica, nothing rolled back,
  /// every epoch's accounting exact.
  @Test func aReplicaSentSIGTERMLeavesAtTheNextCutWithoutARollback() throws {
    let (dir, launch, manifest, leaver) = try stageOneOnTwoReplicasAfterEpochOne(epochs: 6)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    kill(leaver.pid, SIGTERM)
    #expect(eventually(timeout: .seconds(30)) { !processExists(leaver.pid) }, "the leaver exits")
    let result = launch.wait(timeout: .seconds(180))
    #expect(result.status == 0, "\(result.stderr)")
    let output = result.stdout + result.stderr
    #expect(output.contains("stage 1 replica 1 (") && output.contains("leaves at the next cut"), "\(output)")
    #expect(output.contains("replicas per stage now 1, 1, 1 (0 joined, 1 left)"), "\(output)")
    #expect(!output.contains("to train again") && !output.contains("waiting for a worker"), "no recovery")
    let after = try finishedRun(dir, epochs: 6)
    #expect(after.recoveries == nil && after.rejected.isEmpty, "\(after.rejected)\n\(output)")
    #expect(after.stages.map { "\($0.stage).\($0.replica ?? -1)" }.sorted() == ["0.-1", "1.-1", "2.-1"])
  }

  /// kill -9 to one of stage 1's two replicas mid-epoch: the job goes on as it is with the
  /// other — no rollback, no reset, nothing trained again, no replacement waited for; stage 0
  /// sends what the dead one held to the live one and says what it had handed on. A worker
  /// started then with `--stage 1` joins back at the next cut. One recovery (not rolled
  /// back), every epoch's accounting exact, two replicas of stage 1 at the end.
  @Test func aKilledReplicaIsLeftOutWithoutARollbackAndANewWorkerJoinsBack() throws {
    let (dir, launch, manifest, victim) = try stageOneOnTwoReplicasAfterEpochOne(epochs: 8)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    kill(victim.pid, SIGKILL)
    #expect(eventually(timeout: .seconds(30)) {
      let now = readManifest("\(dir)/run")
      return now?.state == "running" && now?.recoveries?.count == 1
    }, "going on without it")
    let joiner = try ChildProcess(stagewise: ["worker", "--scheduler", manifest.control, "--stage", "1"])
    let result = launch.wait(timeout: .seconds(180))
    #expect(result.status == 0, "\(result.stderr)")
    #expect(joiner.wait(timeout: .seconds(30)).status == 0)
    let output = result.stdout + result.stderr
    #expect(output.contains("the job goes on with 1 replica of stage 1, nothing trained again"), "\(output)")
    #expect(output.contains("stage 1 replica 1 had handed on"), "its sender's count")
    #expect(!output.contains("to train again") && !output.contains("waiting for a worker"), "no rollback")
    let after = try finishedRun(dir, epochs: 8)
    #expect(after.recoveries?.count == 1 && after.recoveries?.first?.rolledBack == false)
    #expect(after.recoveries?.first?.batchesRetrained == 0)
    #expect(after.stages.map { "\($0.stage).\($0.replica ?? -1)" }.sorted() == ["0.-1", "1.0", "1.1", "2.-1"])
  }

  /// A forged STATE (the wrong length), a STATE claiming to come from the replica itself and an
  /// ACK for a batch never sent reach a replica's gradient socket: each is refused and
  /// counted, and the run ends as it should.
  @Test func malformedReplicaMessagesAreRefusedAndCounted() throws {
    var config = daemonConfig(epochs: 4, trainSamples: 1200)
    config.stages[1].replicas = 2
    let (dir, launch, manifest, context) = try startedRun(config)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let target = try #require(manifest.stages.first { $0.stage == 1 && $0.replica == 0 })
    let socket = try pushSocket(context, to: try #require(target.gradEndpoint))
    var wrongLength = Message(
      kind: .state, tensors: [WireTensor(role: .state, shape: [1, 3], floats: [1, 2, 3])])
    (wrongLength.job, wrongLength.stage, wrongLength.replica) = (manifest.job, 1, 1)
    var fromItself = wrongLength
    fromItself.replica = 0
    var ack = Message(kind: .ack)
    (ack.job, ack.stage, ack.sequence) = (manifest.job, 2, 123_456)
    for message in [wrongLength, fromItself, ack] { try socket.send(message.encode()) }
    let result = launch.wait(timeout: .seconds(180))
    #expect(result.status == 0, "\(result.stderr)")
    for report in metricsLines("\(dir)/run") { expectNothingLost(report) }
    let after = try #require(readManifest("\(dir)/run"))
    let counted = after.stages.first { $0.stage == 1 && $0.replica == 0 }?.rejected ?? [:]
    #expect(counted.values.reduce(0, +) == 3, "\(counted)")
  }
}
