import Datasets
import Foundation
import Learning
import Memory
import NN
import Telemetry
import Wire
import ZMQ

/// The data plane seen from the scheduler: feeding batches with credits, and the sink where
/// results and markers come back and epochs close.
extension Scheduler {
  // MARK: - Feeding

  func feedWhileCredits() throws {
    guard let feed else { return }
    while true {
      if pendingFeed == nil {
        guard let item = plan.peek else { return }
        if item.isBatch && inFlight >= maxInFlight { return }
        pendingFeed = frames(for: item)
      }
      let outcome = Result { () throws(ZMQError) in try feed.send(pendingFeed!) }
      if case .failure(let error) = outcome {
        if error.isTimeout { return }  // stage 1's queue is full: try again next turn
        throw error
      }
      let item = plan.peek!
      if case .train(let epoch, _, _, _, _) = item, ledgers[epoch] == nil {
        ledgers[epoch] = EpochLedger(stageCount: stageCount, startMicros: WallClock.micros())
      }
      if item.isBatch { inFlight += 1 }
      if case .train(let epoch, _, let micro, _, _) = item, micro == 0 { trainBatchesFed[epoch, default: 0] += 1 }
      if case .eval(let epoch, let indices) = item { evalSamplesFed[epoch, default: 0] += indices.count }
      sequence += 1
      pendingFeed = nil
      plan.advance()
    }
  }

  func frames(for item: FeedPlan.Item) -> [[UInt8]] {
    var message: Message
    switch item {
    case .train(let epoch, let indices, _, _, _), .eval(let epoch, let indices):
      let isTrain = { if case .train = item { return true } else { return false } }()
      let (batch, raw) = isTrain ? train.trainingBatch(indices, epoch: epoch % plan.epochsPerPhase, augmentation: augmentation) : (test.batch(indices), { self.test.rawBatch(indices) })
      message = Message(kind: isTrain ? .train : .eval, tensors: StageHandoff.feed(batch, raw: raw(), into: handoffs[0]))
      message.epoch = UInt32(epoch)
      if isTrain { message.flags = TrainFlags.flags(activeStage: plan.activeStage(epoch: epoch)) }
      if case .train(_, _, let micro, let parts, let batchSize) = item, parts > 1 {
        // A micro-batch's share of its batch scales its loss gradient on the last stage.
        message.tensors.append(WireTensor(role: .share, shape: [1], floats: [Float(indices.count) / Float(batchSize)]))
        (message.microIndex, message.microCount) = (UInt16(micro), UInt16(parts))
      }
    case .marker(let epoch, let flag, let batchesDone):
      message = Message(kind: .marker)
      message.flags = flag.flag.rawValue
      message.epoch = UInt32(epoch)
      message.step = UInt64(batchesDone)
    }
    message.job = job
    message.sequence = sequence
    return message.encode()
  }

  // MARK: - Sink

  func serviceSink() throws {
    while try !Socket.pollReadable([sink], timeoutMilliseconds: 0).isEmpty {
      let accepted = rejections.accept(try sink.receive(), on: "sink") { message throws(WireError) in
        try jobs.check(message, current: job)
        guard message.kind == .result || message.kind == .marker else { throw .unexpected("\(message.kind) at the sink") }
        return message
      }
      guard let message = accepted else { continue }
      let epoch = Int(message.epoch)
      if message.kind == .result {
        inFlight = max(0, inFlight - 1)
      } else if let flag = MarkerFlag(rawValue: message.flags) {
        if flag == .trainEnd { ledgers[epoch]?.trainEndMicros = WallClock.micros() }
        if flag == .evalEnd { ledgers[epoch]?.evalEndSeen = true }
        try closeEpochs()
      }
    }
  }

  func closeEpochs() throws {
    while let ledger = ledgers[firstEpoch + reports.count], ledger.isComplete {
      let epoch = firstEpoch + reports.count
      let phaseEpoch = epoch % plan.epochsPerPhase
      let batches = plan.trainOrder.batchesPerEpoch
      let lr = config.learningRate(step: phaseEpoch * batches, stepsPerEpoch: batches)
      var epochReport = ledger.report(epoch: phaseEpoch, steps: (phaseEpoch + 1) * batches, learningRate: lr)
      epochReport.activeStage = plan.activeStage(epoch: epoch)
      // Nothing lost, measured: what was fed against what every stage trained and scored.
      epochReport.accounting = EpochAccounting(
        batchesFed: trainBatchesFed[epoch] ?? 0, batchesTrained: ledger.train.map { $0?.batches ?? 0 },
        evalSamplesFed: evalSamplesFed[epoch] ?? 0, evalSamplesScored: ledger.eval.map { $0?.samples ?? 0 })
      evalSamplesFed[epoch] = nil
      reports.append(epochReport)
      lastEpochAt = ContinuousClock.now
      ledgers[epoch] = nil
      try directory.record(epochReport)
      let stages = epochReport.test.stages ?? Array(epochReport.test.stageAccuracy.indices)
      for (i, accuracy) in epochReport.test.stageAccuracy.enumerated() {
        try directory.record(EvalLine(epoch: epoch, stage: stages[i], accuracy: accuracy, loss: epochReport.test.stageLoss[i]), in: "eval.jsonl")
      }
      clearLive()
      report(EpochReport.line(epochReport, of: plan.epochsPerPhase))
      Allocator.returnFreedMemory()
      if onEpoch?(epochReport) == true { stopAfterEpoch = true }
      try writeManifest(state: "running", detail: nil)
    }
  }
}
