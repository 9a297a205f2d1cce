import Learning
import NN
import Testing

/// A stage's replicas without processes: where they sit among a job's workers, how a
/// replica's changes travel and add up, how markers from several senders line up, and how
/// their epoch totals add up.
@Suite("Stage replicas: layout, change sums, marker alignment, totals")
struct ReplicaTests {
  typealias Machine = StageMachine<Int>

  @Test func aLayoutNumbersEveryStagesReplicasInOrder() {
    let layout = ReplicaLayout(counts: [1, 3, 2])
    #expect(layout.slotCount == 6 && layout.isReplicated)
    #expect(layout.slots(ofStage: 1) == 1..<4 && layout.slots(ofStage: 2) == 4..<6)
    #expect(layout.place(ofSlot: 0) == (0, 0))
    #expect(layout.place(ofSlot: 3) == (1, 2))
    #expect(layout.place(ofSlot: 5) == (2, 1))
    #expect(layout.slot(stage: 2, replica: 1) == 5)
    #expect(layout.name(ofSlot: 0) == "stage 0" && layout.name(ofSlot: 2) == "stage 1 replica 1")
    #expect(!ReplicaLayout(counts: [1, 1]).isReplicated)
  }

  /// Stage 1 of a two-stage greedy job, as replica `index` of `count`.
  static func replica(_ index: Int, of count: Int, every: Int) throws -> Machine {
    var config = RunConfig()
    config.stages = RunConfig.mlpStages(width: 16, count: 2)
    config.learningRateSchedule.kind = .constant
    let stage = try config.buildStage(1, sampleShape: [16], classes: 10)
    var machine = Machine(
      stage: stage, config: config, batchesPerEpoch: 8, maxInFlight: 2,
      replica: .init(index: index, count: count, averageEvery: every),
      clock: { 0 })
    _ = machine.on(.start)
    return machine
  }

  static func batch(_ seed: Int) -> Machine.Event {
    let x = Tensor(shape: [4, 16], storage: (0..<64).map { Float(($0 * 7 + seed * 3) % 11) / 11 })
    let tag = BatchTag(sequence: UInt64(seed), microIndex: 0, microCount: 1, share: nil, activeStage: nil)
    let labels = (0..<4).map { Int32(($0 + seed) % 10) }
    return .train(Stage.Input(x: x, labels: labels, image: nil), tag, seed)
  }

  /// Runs an event as a shell does; returns the changes the machine sent to its peers.
  static func drive(_ m: inout Machine, _ event: Machine.Event) -> [Machine.ReplicaState] {
    var sent: [Machine.ReplicaState] = []
    func perform(_ actions: [Machine.Action]) {
      for action in actions {
        switch action {
        case .work(let work): perform(m.run(work))
        case .send(.state(let change)): sent.append(change)
        default: break
        }
      }
    }
    perform(m.on(event))
    return sent
  }

  /// With sums only at the marker, the replicas end with the same bits: the start plus what
  /// each replica's own steps changed — what one machine training the same batches from the
  /// same start would have changed, replica by replica.
  @Test func atAMarkerEveryReplicaTakesTheStartPlusEveryReplicasChange() throws {
    var a = try Self.replica(0, of: 2, every: 0)
    var b = try Self.replica(1, of: 2, every: 0)
    let start = a.stage.averagedState
    #expect(start == b.stage.averagedState)  // built alike: the shared start
    var soloA = try Self.replica(0, of: 1, every: 0)
    var soloB = try Self.replica(0, of: 1, every: 0)
    for i in 0..<3 {
      #expect(Self.drive(&a, Self.batch(2 * i)).isEmpty)
      _ = Self.drive(&soloA, Self.batch(2 * i))
      _ = Self.drive(&b, Self.batch(2 * i + 1))
      _ = Self.drive(&soloB, Self.batch(2 * i + 1))
    }
    let marker = Marker(.trainEnd, epoch: 0)
    let fromA = Self.drive(&a, .marker(marker, 99))
    let fromB = Self.drive(&b, .marker(marker, 99))
    #expect(fromA.count == 1 && fromA[0].round == marker && fromA[0].steps == 3)
    _ = Self.drive(&a, .peerState(fromB[0], from: 1))
    _ = Self.drive(&b, .peerState(fromA[0], from: 0))
    let (endA, endB) = (a.stage.averagedState, b.stage.averagedState)
    #expect(endA == endB)
    // Each replica's change is what the same steps alone changed (float sums agree to rounding):
    // the weights take both, the momentum buffers their mean.
    let changeA = zip(soloA.stage.averagedState, start).map { $0 - $1 }
    let changeB = zip(soloB.stage.averagedState, start).map { $0 - $1 }
    let summed = a.stage.summedLength
    #expect(summed < start.count)  // SGD with momentum: its buffer is shared too
    let expected = (0..<start.count).map {
      start[$0] + (changeA[$0] + changeB[$0]) / ($0 < summed ? 1 : 2)
    }
    let worst = zip(endA, expected).map { abs($0 - $1) }.max()!
    let moved = changeA.map(abs).max()!
    #expect(moved > 1e-3 && worst < 1e-6, "moved \(moved), off by \(worst)")
    // The schedule's clock counts every replica's steps.
    #expect(a.step == 6 && b.step == 6)
  }

  /// A replica dies during a round: the live ones stop waiting for it, end the round with the
  /// same sum (without its change), and from then on the clock counts two replicas' steps.
  @Test func aRoundEndsWithoutADeadPeer() throws {
    var a = try Self.replica(0, of: 3, every: 0)
    var b = try Self.replica(1, of: 3, every: 0)
    _ = Self.drive(&a, Self.batch(0))
    _ = Self.drive(&b, Self.batch(1))
    let marker = Marker(.trainEnd, epoch: 0)
    let fromA = Self.drive(&a, .marker(marker, 99))
    let fromB = Self.drive(&b, .marker(marker, 99))
    _ = Self.drive(&a, .peerState(fromB[0], from: 1))
    _ = Self.drive(&b, .peerState(fromA[0], from: 0))
    let waiting = a.stage.averagedState
    #expect(!a.takesData, "replica 2's change is awaited")
    _ = Self.drive(&a, .peerDropped(2))
    _ = Self.drive(&b, .peerDropped(2))
    #expect(a.stage.averagedState == b.stage.averagedState && a.stage.averagedState != waiting)
    #expect(a.step == 2 && b.step == 2 && a.droppedPeers == [2])
    _ = Self.drive(&a, Self.batch(2))
    #expect(a.step == 4, "an own step is one of two live replicas' share")
    let late = Self.drive(&a, .peerState(fromB[0], from: 2))
    #expect(late.isEmpty && a.step == 4, "what the dead one sent late is not taken")
  }

  /// Periodic sends: every own step (averageEvery 1) a replica sends what it changed, a peer
  /// adds it in, and what it adds is not sent back as its own.
  @Test func periodicChangesAreAddedInAndNotSentBack() throws {
    var a = try Self.replica(0, of: 2, every: 1)
    var b = try Self.replica(1, of: 2, every: 1)
    let start = a.stage.averagedState
    let sent = Self.drive(&a, Self.batch(0))
    let summed = a.stage.summedLength
    #expect(sent.count == 1 && sent[0].round == nil && sent[0].values.count == summed)
    _ = Self.drive(&b, .peerState(sent[0], from: 0))
    // The weights: start + the same change; b's momentum holds none of a's gradient (else b
    // would move along it again, and every step would count twice).
    let (stateA, stateB) = (a.stage.averagedState, b.stage.averagedState)
    #expect(stateB.prefix(summed) == stateA.prefix(summed) && stateB != start)
    #expect(stateB.dropFirst(summed) == start.dropFirst(summed))
    #expect(stateA.dropFirst(summed) != start.dropFirst(summed))
    // b's next own change holds only b's own step, not a's change again.
    let before = b.stage.averagedState
    let fromB = Self.drive(&b, Self.batch(1))
    let ownStep = zip(b.stage.averagedState, before).map { $0 - $1 }
    #expect(fromB.count == 1 && zip(fromB[0].values, ownStep).allSatisfy { abs($0 - $1) < 1e-6 })
  }

  /// Markers from two senders: the first copy waits, and what its sender sends next waits
  /// behind it, until the other sender's copy came; then the marker goes on once, and what
  /// waited follows in order (a next marker's copy among it lines up again).
  @Test func markersFromSeveralSendersLineUp() {
    var lineUp = MarkerAlignment<String>(senders: 2)
    #expect(lineUp.take("a1", from: 0, isMarker: false) == "a1")
    #expect(lineUp.take("M from a", from: 0, isMarker: true) == nil)
    #expect(lineUp.take("a2", from: 0, isMarker: false) == nil)  // after a's copy: waits
    #expect(lineUp.take("b1", from: 1, isMarker: false) == "b1")  // before b's copy: goes
    #expect(!lineUp.canRelease)
    #expect(lineUp.take("N from a", from: 0, isMarker: true) == nil)
    #expect(lineUp.take("M from b", from: 1, isMarker: true) == "M from b")
    #expect(lineUp.canRelease && lineUp.heldCount == 2)
    #expect(lineUp.release() == "a2")
    #expect(lineUp.release() == nil)  // a's copy of the next marker: waits for b's
    #expect(lineUp.take("N from b", from: 1, isMarker: true) == "N from b")
    var single = MarkerAlignment<String>(senders: 1)
    #expect(single.take("M", from: 0, isMarker: true) == "M")
  }

  /// A sender dies: its copies are no longer awaited — a marker that waited only for it goes
  /// on at the next release, ahead of what was held — and a late copy of its is ignored.
  @Test func aDeadSendersMarkersAreNotAwaited() {
    var lineUp = MarkerAlignment<String>(senders: 3)
    #expect(lineUp.take("M from a", from: 0, isMarker: true) == nil)
    #expect(lineUp.take("a1", from: 0, isMarker: false) == nil)
    #expect(lineUp.take("M from b", from: 1, isMarker: true) == nil)
    lineUp.drop(sender: 2)
    #expect(lineUp.canRelease)
    #expect(lineUp.release() == "M from a")
    #expect(lineUp.release() == "a1")
    #expect(lineUp.take("c1", from: 2, isMarker: false) == "c1", "a batch it handed on counts")
    #expect(lineUp.take("N from c", from: 2, isMarker: true) == nil)
    #expect(lineUp.take("N from a", from: 0, isMarker: true) == nil)
    #expect(lineUp.take("N from b", from: 1, isMarker: true) == "N from b")
  }

  /// A dead replica's totals are not awaited; each of its senders' counts is, and goes into
  /// the accounting for the phases it never reported.
  @Test func theLedgerCreditsADeadReplicaFromItsSenders() {
    var ledger = EpochLedger(replicas: [1, 2], startMicros: 0)
    ledger.add(Self.totals(0, .train, batches: 5))
    ledger.add(Self.totals(0, .eval, batches: 2))
    ledger.add(Self.totals(1, .train, batches: 3))
    ledger.add(Self.totals(1, .eval, batches: 2))
    ledger.add(Self.totals(1, .train, batches: 2), replica: 1)
    (ledger.trainEndMicros, ledger.evalEndSeen) = (10, true)
    ledger.excuse(stage: 1, replica: 1, senders: 2)  // it reported training, not evaluation
    #expect(!ledger.isComplete && ledger.owesCredits)
    ledger.add(Self.totals(1, .eval, batches: 1), replica: 1)  // too late: its senders count it
    ledger.credit(stage: 1, replica: 1, train: (2, 8), evalSamples: 0)
    #expect(!ledger.isComplete)
    ledger.credit(stage: 1, replica: 1, train: (0, 0), evalSamples: 4)
    #expect(ledger.isComplete)
    #expect(ledger.creditedBatches == [0, 0], "its training totals came: not counted twice")
    #expect(ledger.creditedEvalSamples == [0, 4] && ledger.eval[1]?.samples == 8)
  }

  /// A stage's phase totals: `batches` batches of 4 samples, each right once, loss 1.
  static func totals(_ stage: Int, _ phase: Phase, batches: Int) -> PhaseTotals {
    var t = PhaseTotals(stage: stage, epoch: 0, phase: phase)
    for _ in 0..<batches { t.add(loss: 1, correct: 1, samples: 4) }
    return t
  }

  /// The epoch's ledger adds up a stage's replicas' totals and waits for all of them.
  @Test func theLedgerAddsUpReplicasTotals() {
    var ledger = EpochLedger(replicas: [1, 2], startMicros: 0)
    ledger.add(Self.totals(0, .train, batches: 5))
    ledger.add(Self.totals(0, .eval, batches: 2))
    ledger.add(Self.totals(1, .train, batches: 3))
    ledger.add(Self.totals(1, .eval, batches: 1))
    (ledger.trainEndMicros, ledger.evalEndSeen) = (10, true)
    #expect(!ledger.isComplete)  // replica 1 of stage 1 has not reported
    ledger.add(Self.totals(1, .train, batches: 2))
    #expect(!ledger.isComplete && ledger.train[1]?.batches == 3, "replica 0 reports once")
    ledger.add(Self.totals(1, .train, batches: 2), replica: 1)
    ledger.add(Self.totals(1, .eval, batches: 1), replica: 1)
    #expect(ledger.isComplete)
    #expect(ledger.train[1]?.batches == 5 && ledger.eval[1]?.samples == 8)
  }

  /// Replicas run the methods whose stages learn on their own or hear back only from the next
  /// stage (DNI); e2e (GPipe too) and DFA are refused with the reason and the methods that can.
  @Test func replicasRefuseMethodsThatAnswerAlongThePipeline() throws {
    for method in Method.allCases {
      var config = RunConfig()
      config.method = method
      config.stages[1].replicas = 2
      let refused = [Method.e2e, .dfa].contains(method)
      do {
        try config.validate()
        #expect(!refused, "\(method) with replicas was accepted")
      } catch {
        #expect(refused, "\(method): \(error)")
        #expect("\(error)".contains("stages[1].replicas") && "\(error)".contains("dni"), "\(error)")
      }
    }
  }

  @Test func replicasAreNotPartOfTheModel() throws {
    var config = RunConfig()
    let hash = config.modelHash
    config.stages[1].replicas = 3
    config.replicas.averageEvery = 4
    #expect(config.modelHash == hash)
    let reread = try RunConfig.parse(yaml: config.yaml())
    #expect(reread.stages[1].replicas == 3 && reread.replicas.averageEvery == 4)
    #expect(!RunConfig().yaml().contains("replicas"))
  }

  @Test func replicasAreRefusedWhereRepliesWouldNeedRouting() {
    var config = RunConfig()
    config.stages[1].replicas = 2
    config.method = .e2e
    config.schedule = .lockstep
    #expect(throws: ConfigError.self) { try config.validate() }
    config.method = .greedy
    config.schedule = .pipelined
    #expect(throws: Never.self) { try config.validate() }
    config.stages[1].replicas = 0
    #expect(throws: ConfigError.self) { try config.validate() }
  }
}
