import Foundation
import Datasets
import Learning
import Telemetry
import TestSupport
import Testing
import Wire

@testable import Runtime

func hello(_ stage: Int?, version: Int = Int(Protocol.version), pid: Int32 = 1) -> Hello {
  Hello(
    protocolVersion: version, host: "h", pid: pid, dataEndpoint: "tcp://127.0.0.1:\(5000 + Int(pid))",
    gradEndpoint: "tcp://127.0.0.1:\(6000 + Int(pid))", requestedStage: stage)
}

@Suite("Registration state machine")
struct RegistryTests {
  @Test func requestedStagesFirstThenLowestVacant() throws {
    var registry = Registry(stageCount: 3)
    #expect(try registry.register(identity: [1], hello: hello(2, pid: 1), nowMicros: 0).get() == 2)
    #expect(try registry.register(identity: [2], hello: hello(nil, pid: 2), nowMicros: 0).get() == 0)
    #expect(!registry.isFull)
    #expect(try registry.register(identity: [3], hello: hello(nil, pid: 3), nowMicros: 0).get() == 1)
    #expect(registry.isFull && !registry.allReady)
    for stage in 0..<3 { registry.markReady(stage) }
    #expect(registry.allReady)
  }

  @Test func anExplicitRequestMovesAFloatingWorker() throws {
    var registry = Registry(stageCount: 2)
    #expect(try registry.register(identity: [1], hello: hello(nil, pid: 1), nowMicros: 0).get() == 0)
    #expect(try registry.register(identity: [2], hello: hello(0, pid: 2), nowMicros: 0).get() == 0)
    #expect(registry.slot(of: [1]) == 1 && registry.isFull)
  }

  @Test func aRepeatedHelloKeepsItsStage() throws {
    var registry = Registry(stageCount: 2)
    #expect(try registry.register(identity: [9], hello: hello(1), nowMicros: 0).get() == 1)
    #expect(try registry.register(identity: [9], hello: hello(1), nowMicros: 5).get() == 1)
  }

  @Test func refusalsSayWhy() {
    var registry = Registry(stageCount: 2)
    _ = registry.register(identity: [1], hello: hello(0, pid: 10), nowMicros: 0)
    let taken = registry.register(identity: [2], hello: hello(0, pid: 11), nowMicros: 0)
    #expect(taken.failureMessage?.contains("stage 0 is already taken by h pid 10") == true)
    #expect(registry.register(identity: [3], hello: hello(5), nowMicros: 0).failureMessage?.contains("stage 5 does not exist") == true)
    #expect(registry.register(identity: [4], hello: hello(nil, version: 99), nowMicros: 0).failureMessage?.contains("protocol version 99 refused") == true)
    _ = registry.register(identity: [5], hello: hello(nil), nowMicros: 0)
    #expect(registry.register(identity: [6], hello: hello(nil), nowMicros: 0).failureMessage == "every stage of this job is taken")
  }

  @Test func silenceBeyondTheLimitMeansDead() {
    var registry = Registry(stageCount: 2)
    _ = registry.register(identity: [1], hello: hello(0), nowMicros: 0)
    _ = registry.register(identity: [2], hello: hello(1), nowMicros: 0)
    registry.heard(from: 1, atMicros: 900)
    #expect(registry.silent(nowMicros: 1000, limitMicros: 500) == [0])
  }
}

extension Result where Failure == RuntimeError {
  var failureMessage: String? {
    if case .failure(let error) = self { return error.message }
    return nil
  }
}

@Suite("Feed plan")
struct FeedPlanTests {
  @Test func epochsAreTrainMarkerEvalMarker() {
    var plan = FeedPlan(
      trainOrder: BatchOrder(count: 5, batchSize: 2, shuffle: false, seed: 0),
      evalOrder: BatchOrder(count: 3, batchSize: 3, shuffle: false, seed: 0), epochs: 2)
    var items: [FeedPlan.Item] = []
    while let item = plan.peek {
      items.append(item)
      plan.advance()
    }
    #expect(items.count == 2 * (3 + 1 + 1 + 1))
    #expect(items[0] == .train(epoch: 0, indices: [0, 1]))
    #expect(items[2] == .train(epoch: 0, indices: [4]))
    #expect(items[3] == .marker(epoch: 0, .trainEnd))
    #expect(items[4] == .eval(epoch: 0, indices: [0, 1, 2]))
    #expect(items[5] == .marker(epoch: 0, .evalEnd))
    #expect(items[6] == .train(epoch: 1, indices: [0, 1]))
    #expect(items.filter(\.isBatch).count == 8)
  }

  @Test func gpipeSplitsEachBatchIntoMicroBatches() {
    var plan = FeedPlan(
      trainOrder: BatchOrder(count: 10, batchSize: 7, shuffle: false, seed: 0),
      evalOrder: BatchOrder(count: 2, batchSize: 2, shuffle: false, seed: 0), epochs: 1, microBatches: 3)
    var items: [FeedPlan.Item] = []
    while let item = plan.peek {
      items.append(item)
      plan.advance()
    }
    #expect(items[0] == .train(epoch: 0, indices: [0, 1], micro: 0, of: 3, batchSize: 7))
    #expect(items[2] == .train(epoch: 0, indices: [4, 5, 6], micro: 2, of: 3, batchSize: 7))
    #expect(items[3] == .train(epoch: 0, indices: [7], micro: 0, of: 3, batchSize: 3))
    #expect(items[5] == .train(epoch: 0, indices: [9], micro: 2, of: 3, batchSize: 3))
    #expect(items[6] == .marker(epoch: 0, .trainEnd))
  }

  /// Mid-epoch checkpoint markers after every N training batches (not after the last: the
  /// train-end marker is that cut); resuming mid-epoch skips the batches already trained.
  @Test func checkpointMarkersAndResumingMidEpoch() {
    let order = BatchOrder(count: 14, batchSize: 2, shuffle: true, seed: 5)  // 7 batches
    let eval = BatchOrder(count: 2, batchSize: 2, shuffle: false, seed: 0)
    func items(_ plan: FeedPlan) -> [FeedPlan.Item] {
      var plan = plan, items: [FeedPlan.Item] = []
      while let item = plan.peek {
        items.append(item)
        plan.advance()
      }
      return items
    }
    let all = items(FeedPlan(trainOrder: order, evalOrder: eval, epochs: 2, checkpointEvery: 3))
    let cuts = all.compactMap { if case .marker(let e, .checkpoint, let b) = $0 { (e, b) } else { nil } }
    #expect(cuts.map(\.0) == [0, 0, 1, 1] && cuts.map(\.1) == [3, 6, 3, 6])
    #expect(all[3] == .marker(epoch: 0, .checkpoint, batchesDone: 3))
    let resumed = items(FeedPlan(trainOrder: order, evalOrder: eval, epochs: 2, startEpoch: 1, startBatch: 3, checkpointEvery: 3))
    let trained = resumed.compactMap { if case .train(let e, let indices, _, _, _) = $0 { (e, Array(indices)) } else { nil } }
    #expect(trained.map(\.0) == [1, 1, 1, 1])
    #expect(trained.map(\.1) == order.batches(epoch: 1).dropFirst(3).map(Array.init))
    #expect(resumed.first(where: { !$0.isBatch }) == .marker(epoch: 1, .checkpoint, batchesDone: 6))
  }

  @Test func trainingOrderIsTheTrainersOrder() {
    let order = BatchOrder(count: 50, batchSize: 8, shuffle: true, seed: 3)
    var plan = FeedPlan(trainOrder: order, evalOrder: BatchOrder(count: 4, batchSize: 4, shuffle: false, seed: 0), epochs: 2)
    var epoch1: [ArraySlice<Int>] = []
    while let item = plan.peek {
      if case .train(1, let indices, _, _, _) = item { epoch1.append(indices) }
      plan.advance()
    }
    #expect(epoch1.map(Array.init) == order.batches(epoch: 1).map(Array.init))
  }
}

@Suite("Resume points")
struct ResumePointTests {
  /// Two stages, 10 batches an epoch: epoch cuts after 1 and 2 epochs, step cuts at 15 and
  /// 25 (stage 1 lacks 25); `reported` epochs in metrics.jsonl.
  func runDirectory(reported: Int) throws -> String {
    let dir = try temporaryDirectory("resume")
    let entry = [Safetensors.Entry(name: "w", shape: [1], values: [1])]
    for stage in 0..<2 {
      for epoch in [1, 2] { try Safetensors.write(entry, metadata: [:], to: ResumePoint.epochPath(in: dir, stage: stage, epochsDone: epoch)) }
      for step in stage == 0 ? [15, 25] : [15] { try Safetensors.write(entry, metadata: [:], to: ResumePoint.stepPath(in: dir, stage: stage, step: step)) }
    }
    try String(repeating: "{}\n", count: reported).write(toFile: "\(dir)/metrics.jsonl", atomically: true, encoding: .utf8)
    return dir
  }

  @Test func theNewestCommonCutWhoseEpochsWereAllReported() throws {
    let reportedTwo = try runDirectory(reported: 2)
    defer { try? FileManager.default.removeItem(atPath: reportedTwo) }
    let latest = try #require(ResumePoint.newest(in: reportedTwo, stageCount: 2, batchesPerEpoch: 10))
    #expect(latest.epochsDone == 2 && latest.batchesDone == 0 && latest.checkpoints[1].hasSuffix("stage-1.epoch-2.safetensors"))
    // Epoch 2's evaluation never finished: its cut would leave a hole in the logs.
    let reportedOne = try runDirectory(reported: 1)
    defer { try? FileManager.default.removeItem(atPath: reportedOne) }
    let safe = try #require(ResumePoint.newest(in: reportedOne, stageCount: 2, batchesPerEpoch: 10))
    #expect(safe.epochsDone == 1 && safe.batchesDone == 5 && safe.checkpoints[0].hasSuffix("stage-0.step-15.safetensors"))
    // Without the batch count, only epoch cuts count.
    #expect(ResumePoint.newest(in: reportedOne, stageCount: 2)?.epochsDone == 1)
    ResumePoint.prune(in: reportedTwo, stage: 0, batchesPerEpoch: 10, before: 20)
    #expect(ResumePoint.newest(in: reportedTwo, stageCount: 2, batchesPerEpoch: 10)?.epochsDone == 2)
    #expect(!FileManager.default.fileExists(atPath: ResumePoint.stepPath(in: reportedTwo, stage: 0, step: 15)))
  }

  /// Rewinding to a cut drops later cuts and the temporary files of saves that never finished.
  @Test func rewindRemovesLaterCutsAndUnfinishedSaves() throws {
    let dir = try runDirectory(reported: 2)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let unfinished = ResumePoint.epochPath(in: dir, stage: 0, epochsDone: 3) + ".tmp-4242"
    try Data([1, 2, 3]).write(to: URL(fileURLWithPath: unfinished))
    let point = ResumePoint(epochsDone: 1, checkpoints: [])
    try point.rewind(dir, stageCount: 2, batchesPerEpoch: 10)
    #expect(!FileManager.default.fileExists(atPath: unfinished))
    #expect(!FileManager.default.fileExists(atPath: ResumePoint.epochPath(in: dir, stage: 1, epochsDone: 2)))
    #expect(FileManager.default.fileExists(atPath: ResumePoint.epochPath(in: dir, stage: 1, epochsDone: 1)))
  }

  /// A flipped byte in the newest cut's data: that cut is passed over for the one before,
  /// naming the file and why; with every cut damaged, the error names them all.
  @Test func aDamagedNewestCutFallsBackToTheNewestIntactOne() throws {
    let dir = try runDirectory(reported: 2)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let newest = ResumePoint.epochPath(in: dir, stage: 1, epochsDone: 2)
    var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: newest)))
    bytes[bytes.count - 1] ^= 0x01  // one bit of the last float
    try Data(bytes).write(to: URL(fileURLWithPath: newest))
    let point = try #require(ResumePoint.newest(in: dir, stageCount: 2, batchesPerEpoch: 10))
    #expect(point.epochsDone == 1 && point.batchesDone == 5, "the step-15 cut, the newest intact one")
    #expect(point.skipped.count == 1 && point.skipped[0].contains("stage-1.epoch-2") && point.skipped[0].contains("checksum"))
    for path in [ResumePoint.stepPath(in: dir, stage: 1, step: 15), ResumePoint.epochPath(in: dir, stage: 1, epochsDone: 1)] {
      try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
    }
    #expect(ResumePoint.newest(in: dir, stageCount: 2, batchesPerEpoch: 10) == nil)
    #expect { try ResumePoint.find(in: dir, stageCount: 2, batchesPerEpoch: 10) } throws: { "\($0)".contains("damaged: ") }
  }
}

@Suite("Epoch ledger, clock sync, trace recorder")
struct TelemetryTests {
  @Test func ledgerReportsLikeTheTrainer() {
    var ledger = EpochLedger(stageCount: 2, startMicros: 0)
    for stage in 0..<2 {
      var train = PhaseTotals(stage: stage, epoch: 0, phase: .train)
      train.add(loss: 2, correct: 5, samples: 10)
      train.add(loss: 1, correct: 3, samples: 4)
      ledger.add(train)
      var eval = PhaseTotals(stage: stage, epoch: 0, phase: .eval)
      eval.add(loss: 0.5, correct: 8 + stage, samples: 10)
      ledger.add(eval)
    }
    #expect(!ledger.isComplete)
    ledger.trainEndMicros = 2_000_000
    ledger.evalEndSeen = true
    #expect(ledger.isComplete)
    let report = ledger.report(epoch: 0, steps: 2, learningRate: 0.1)
    #expect(report.trainLoss == [1.5, 1.5])  // mean of per-batch losses, as the trainer
    #expect(abs(report.trainAccuracy - 8.0 / 14) < 1e-12)
    #expect(report.test.stageAccuracy == [0.8, 0.9] && report.test.accuracy == 0.9)
    #expect(report.seconds == 2 && report.samplesPerSecond == 7)
  }

  @Test func clockSyncKeepsTheShortestRoundTrip() {
    var sync = ClockSync()
    sync.observe(sentMicros: 0, schedulerMicros: 1_000_050, receivedMicros: 100)  // rtt 100
    #expect(sync.offsetMicros == 1_000_000)
    sync.observe(sentMicros: 200, schedulerMicros: 5_000_000, receivedMicros: 1200)  // slower: ignored
    #expect(sync.offsetMicros == 1_000_000)
    sync.observe(sentMicros: 2000, schedulerMicros: 1_002_010, receivedMicros: 2020)  // rtt 20
    #expect(sync.offsetMicros == 1_000_000 && sync.bestRoundTripMicros == 20)
  }

  /// A scheduler on this host reads the same clock: no estimate replaces the exact 0.
  @Test func aLocalSchedulerSharesTheClock() {
    var sync = ClockSync(sameClock: isLocalEndpoint("tcp://127.0.0.1:5555"))
    sync.observe(sentMicros: 0, schedulerMicros: 1_000_050, receivedMicros: 100)
    #expect(sync.offsetMicros == 0)
    #expect(isLocalEndpoint("ipc:///tmp/s") && isLocalEndpoint("tcp://localhost:1") && isLocalEndpoint("tcp://[::1]:1"))
    #expect(!isLocalEndpoint("tcp://10.0.0.2:5555") && !isLocalEndpoint("tcp://node03:5555"))
  }

  @Test func traceRecorderIsBoundedAndAligned() {
    var trace = TraceRecorder(pid: 2, capacity: 2)
    trace.offsetMicros = 1000
    trace.originMicros = 500
    trace.record("forward", startMicros: 100, endMicros: 150)
    trace.record("backward", startMicros: 150, endMicros: 170)
    trace.record("update", startMicros: 170, endMicros: 171)
    #expect(trace.events.map(\.name) == ["forward", "backward"] && trace.dropped == 1)
    #expect(trace.events[0].ts == 600 && trace.events[0].dur == 50 && trace.events[0].pid == 2)
    #expect(trace.drain(upTo: 1).count == 1 && trace.events.count == 1)
  }

  @Test func liveViewHasOneLinePerStage() {
    let stats = LiveStats(stage: 0, step: 12, loss: 0.25, samplesPerSecond: 1000, busy: 0.93, lastSequence: 40, rejected: ["x": 2])
    let lines = LiveView.render([stats, nil], queueDepth: [1, 0])
    #expect(lines.count == 3)
    #expect(lines[1].contains("12") && lines[1].contains("0.2500") && lines[1].contains("93%"))
    #expect(lines[2].contains("no report yet"))
  }

  /// With replicas a line per worker, named stage.replica, each showing its stage's queue.
  @Test func liveViewNamesReplicasAndQueuesByStage() {
    func stats(_ stage: Int, _ sequence: UInt64) -> LiveStats {
      LiveStats(stage: stage, step: 1, loss: 1, samplesPerSecond: 1, busy: 0.5, lastSequence: sequence, rejected: [:])
    }
    let layout = ReplicaLayout(counts: [1, 2])
    // Fed up to 20; stage 0 handled 18; stage 1's replicas 11 and 14 (interleaved sequences).
    let all = [stats(0, 18), stats(1, 11), stats(1, 14)]
    let depth = LiveTerminal.queueDepths(all, layout: layout, fed: 21, maxInFlight: 6)
    #expect(depth == [2, 4, 4])
    let lines = LiveView.render(all, labels: ["0", "1.0", "1.1"], queueDepth: depth)
    #expect(lines[2].hasPrefix("  1.0") && lines[3].hasPrefix("  1.1"))
  }
}

@Suite("The straggler experiment's wait")
struct StragglerTests {
  /// The wait is (slowdown − 1) × the fastest of the last 16 steps: a step that other processes
  /// slowed is not stretched again, a stage that really got slower is, 16 steps later.
  @Test func aContendedStepIsNotStretchedAgain() throws {
    var config = smallConfig()
    (config.daemon.slowStage, config.daemon.slowdown) = (1, 3)
    #expect(Straggler(config: config, stage: 0) == nil)
    var straggler = try #require(Straggler(config: config, stage: 1))
    #expect(straggler.waitMicros(afterComputing: 10_000) == 20_000)
    #expect(straggler.waitMicros(afterComputing: 16_000) == 20_000)
    for _ in 0..<14 { _ = straggler.waitMicros(afterComputing: 15_000) }
    #expect(straggler.waitMicros(afterComputing: 15_000) == 30_000)
  }
}
