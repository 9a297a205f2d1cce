import Datasets
import Learning
import Telemetry
import Wire

/// One job of a run, from ASSIGN to its end or its failure: what is fed (the plan and its
/// credits), what came back, and the epochs it closed. A recovery replaces it whole — a new
/// job id, the plan from the checkpoint training continues from — never field by field.
public struct JobRun: Sendable {
  /// The job's id on every message.
  public let id: UInt32
  /// Where this job started (nil: the run's start).
  public let resume: ResumePoint?
  public private(set) var plan: FeedPlan
  public let maxInFlight: Int
  public private(set) var inFlight = 0
  /// The next message's sequence number on the feed.
  public private(set) var sequence: UInt64 = 0
  var ledgers: [Int: EpochLedger] = [:]
  /// The epochs this job closed, from `firstEpoch` on.
  public private(set) var reports: [EpochReport] = []
  /// Training batches fed per epoch, earlier jobs' included (to count what a failure costs).
  public private(set) var trainBatchesFed: [Int: Int]
  /// Evaluation samples fed per epoch (the other half of `EpochReport.accounting`).
  var evalSamplesFed: [Int: Int] = [:]
  /// Each worker slot's last live figures (a slot is a stage's replica: `ReplicaLayout`).
  var liveStats: [LiveStats?]
  /// Per slot, samples/s over busy share, smoothed over its live reports (what a worker that
  /// joins reads: one report may fall in an evaluation or an epoch's turn).
  var capacity: [Double?]
  let layout: ReplicaLayout
  /// Which of the last stage's replicas have brought each marker to the sink so far, and the
  /// first copy (a replica that dies may complete it).
  var markerCopies: [UInt64: (first: Message, from: Set<Int>)] = [:]
  /// Slots whose replica died while this job went on without it (`drop`).
  public private(set) var dropped: Set<Int> = []
  /// Results landed since the marker before last, by sequence (two generations, so that a
  /// copy coming just after a marker is still known): a batch a dead replica had handed on
  /// without its ACK reaching the sender is done again, and its second result is not counted.
  var landedResults: Set<UInt64> = []
  var landedBefore: Set<UInt64> = []

  public init(
    id: UInt32, config: RunConfig, trainCount: Int, testCount: Int, resume: ResumePoint?,
    trainBatchesFed: [Int: Int] = [:]
  ) {
    (self.id, self.resume, self.trainBatchesFed) = (id, resume, trainBatchesFed)
    plan = Self.plan(config: config, trainCount: trainCount, testCount: testCount, from: resume)
    layout = ReplicaLayout(config)
    // e2e: one batch (its M micro-batches) in flight; the stages' update locking does the rest.
    // Otherwise two per worker, so that every replica has one to take while one travels.
    let window = config.daemon.maxInFlight > 0 ? config.daemon.maxInFlight : 2 * layout.slotCount
    maxInFlight =
      config.method.splitsBatches ? plan.microBatches : config.schedule == .lockstep ? 1 : window
    liveStats = Array(repeating: nil, count: layout.slotCount)
    capacity = liveStats.map { _ in nil }
  }

  /// A live report from `slot`.
  mutating func noteLive(_ live: LiveStats, slot: Int) {
    liveStats[slot] = live
    let now = live.samplesPerSecond / max(live.busy, 0.01)
    capacity[slot] = capacity[slot].map { 0.7 * $0 + 0.3 * now } ?? now
  }

  /// What is fed, in order, from `resume` on (from the start when nil).
  static func plan(config: RunConfig, trainCount: Int, testCount: Int, from resume: ResumePoint?)
    -> FeedPlan
  {
    let evalOrder = BatchOrder(
      count: testCount, batchSize: config.training.evalBatchSize, shuffle: false, seed: 0)
    // `sequential`: one phase of training.epochs per stage, each training only that stage.
    let phases = config.schedule == .sequential ? config.stages.count : 1
    return FeedPlan(
      trainOrder: trainOrder(config: config, trainCount: trainCount), evalOrder: evalOrder,
      epochs: config.training.epochs * phases,
      microBatches: config.method.splitsBatches ? config.daemon.microBatches : 1,
      epochsPerPhase: config.training.epochs, startEpoch: resume?.epochsDone ?? 0,
      startBatch: resume?.batchesDone ?? 0, checkpointEvery: config.daemon.checkpointEverySteps)
  }

  static func trainOrder(config: RunConfig, trainCount: Int) -> BatchOrder {
    BatchOrder(
      count: trainCount, batchSize: config.training.batchSize, shuffle: true, seed: config.seed)
  }

  public var firstEpoch: Int { resume?.epochsDone ?? 0 }
  /// Every epoch of the plan is closed.
  public var isFinished: Bool { firstEpoch + reports.count >= plan.epochs }

  /// The next item to feed, if the credits allow it (markers need none).
  public var nextFeed: FeedPlan.Item? {
    guard let item = plan.peek, !item.isBatch || inFlight < maxInFlight else { return nil }
    return item
  }

  /// The feed took `nextFeed`.
  mutating func fed(atMicros now: Int64) {
    guard let item = plan.peek else { return }
    switch item {
    case .train(let epoch, _, let micro, _, _):
      if ledgers[epoch] == nil {
        var ledger = EpochLedger(replicas: layout.counts, startMicros: now)
        for slot in dropped {
          let place = layout.place(ofSlot: slot)
          ledger.excuse(stage: place.stage, replica: place.replica, senders: 0)
        }
        ledgers[epoch] = ledger
      }
      if micro == 0 { trainBatchesFed[epoch, default: 0] += 1 }
    case .eval(let epoch, let indices): evalSamplesFed[epoch, default: 0] += indices.count
    case .marker: break
    }
    if item.isBatch { inFlight += 1 }
    sequence += 1
    plan.advance()
  }

  /// A result or a marker reached the sink; true when it was a marker's last copy.
  @discardableResult
  mutating func landed(_ message: Message, atMicros now: Int64) -> Bool {
    if message.kind == .result {
      guard !landedBefore.contains(message.sequence),
        landedResults.insert(message.sequence).inserted
      else { return false }
      inFlight = max(0, inFlight - 1)
    } else if lastCopy(of: message) {
      markerLanded(message, atMicros: now)
      return true
    }
    return false
  }

  /// Every live replica of the last stage has brought this marker: it counts.
  mutating func markerLanded(_ marker: Message, atMicros now: Int64) {
    (landedBefore, landedResults) = (landedResults, [])
    guard let flag = MarkerFlag(rawValue: marker.flags) else { return }
    if flag == .trainEnd { ledgers[Int(marker.epoch)]?.trainEndMicros = now }
    if flag == .evalEnd { ledgers[Int(marker.epoch)]?.evalEndSeen = true }
  }

  /// The last stage's replicas that are alive.
  var liveLastReplicas: Set<Int> {
    let last = layout.stageCount - 1
    return Set(
      layout.slots(ofStage: last).filter { !dropped.contains($0) }.map {
        layout.place(ofSlot: $0).replica
      })
  }

  /// Whether this is the last copy of a marker the last stage's live replicas owe (then it
  /// counts).
  mutating func lastCopy(of marker: Message) -> Bool {
    var entry = markerCopies[marker.sequence] ?? (marker, [])
    entry.from.insert(Int(marker.replica))
    guard entry.from.isSuperset(of: liveLastReplicas) else {
      markerCopies[marker.sequence] = entry
      return false
    }
    markerCopies[marker.sequence] = nil
    return true
  }

  /// The replica in `slot` died and the job goes on without it: its totals are no longer
  /// awaited (its `senders` say what it handed on), nor its copies of markers; returns the
  /// markers that were waiting only for it, now landed, oldest first.
  mutating func drop(slot: Int, senders: Int, atMicros now: Int64) -> [Message] {
    dropped.insert(slot)
    (liveStats[slot], capacity[slot]) = (nil, nil)
    let place = layout.place(ofSlot: slot)
    for epoch in ledgers.keys {
      ledgers[epoch]!.excuse(stage: place.stage, replica: place.replica, senders: senders)
    }
    let live = liveLastReplicas
    let complete = markerCopies.filter { $0.value.from.isSuperset(of: live) }
      .sorted { $0.key < $1.key }.map(\.value.first)
    for marker in complete {
      markerCopies[marker.sequence] = nil
      markerLanded(marker, atMicros: now)
    }
    return complete
  }

  /// Some dead replica's credit is still awaited.
  var owesCredits: Bool { ledgers.values.contains { $0.owesCredits } }

  /// One sender's count of what a dead replica had handed on, per epoch.
  mutating func credit(_ credit: ReplicaCredit) {
    for epoch in ledgers.keys {
      let entries = credit.entries.filter { $0.epoch == epoch }
      let train = entries.first { !$0.isEval }?.count ?? .init()
      let eval = entries.first { $0.isEval }?.count ?? .init()
      ledgers[epoch]!.credit(
        stage: credit.stage, replica: credit.replica, train: (train.batches, train.samples),
        evalSamples: eval.samples)
    }
  }

  mutating func add(_ totals: PhaseTotals, replica: Int) {
    ledgers[totals.epoch]?.add(totals, replica: replica)
  }

  /// Closes every epoch whose figures are all in, in order; returns them with their reports.
  mutating func closeEpochs(config: RunConfig) -> [(epoch: Int, report: EpochReport)] {
    var closed: [(epoch: Int, report: EpochReport)] = []
    while let ledger = ledgers[firstEpoch + reports.count], ledger.isComplete {
      let epoch = firstEpoch + reports.count
      let phaseEpoch = epoch % plan.epochsPerPhase
      let batches = plan.trainOrder.batchesPerEpoch
      let lr = config.learningRate(step: phaseEpoch * batches, stepsPerEpoch: batches)
      var report = ledger.report(
        epoch: phaseEpoch, steps: (phaseEpoch + 1) * batches, learningRate: lr)
      report.activeStage = plan.activeStage(epoch: epoch)
      // Nothing lost, measured: what was fed against what every stage trained and scored.
      report.accounting = EpochAccounting(
        batchesFed: trainBatchesFed[epoch] ?? 0,
        batchesTrained: ledger.train.indices.map {
          (ledger.train[$0]?.batches ?? 0) + ledger.creditedBatches[$0]
        },
        evalSamplesFed: evalSamplesFed[epoch] ?? 0,
        evalSamplesScored: ledger.eval.indices.map {
          (ledger.eval[$0]?.samples ?? 0) + ledger.creditedEvalSamples[$0]
        })
      (evalSamplesFed[epoch], ledgers[epoch]) = (nil, nil)
      reports.append(report)
      closed.append((epoch, report))
    }
    return closed
  }

  /// Training batches fed in epochs at or after `epoch`.
  func batchesFed(since epoch: Int) -> Int {
    trainBatchesFed.filter { $0.key >= epoch }.values.reduce(0, +)
  }
}
