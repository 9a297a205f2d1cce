import Learning
import NN
import Testing

/// The stage machine without processes or sockets: what each method under each schedule does
/// with each event, in order, as the names of its actions (spans by their name, sends by what
/// they send, `work` where the rest of a step is deferred until the sends before it left).
@Suite("Stage machine: every method × schedule × event")
struct StageMachineTests {
  typealias Machine = StageMachine<Int>

  /// A settable clock: the machine reads time only from here.
  final class Clock: @unchecked Sendable {  // one test's thread only
    var now: Int64 = 0
  }

  /// Stage `stage` of a three-stage 32-wide job on 8×8 images, batches of 4.
  static func machine(
    _ method: Method, _ schedule: Schedule = .pipelined, stage: Int, microBatches: Int = 1,
    clock: Clock = Clock()
  ) throws -> Machine {
    var config = smallConfigForMachines(method, schedule)
    config.daemon.microBatches = microBatches
    let built = try config.buildStage(stage, sampleShape: [8, 8, 1], classes: 10)
    var machine = Machine(stage: built, config: config, batchesPerEpoch: 10, maxInFlight: 1, clock: { clock.now })
    _ = machine.on(.start)
    return machine
  }

  static func smallConfigForMachines(_ method: Method, _ schedule: Schedule) -> RunConfig {
    var config = RunConfig()
    (config.method, config.schedule) = (method, schedule)
    config.stages = RunConfig.mlpStages(width: 32, count: 3)
    return config
  }

  /// A batch of 4 for stage `stage`'s input.
  static func batch(_ machine: Machine, sequence: UInt64, microIndex: Int = 0, microCount: Int = 1, activeStage: Int? = nil) -> Machine.Event {
    let shape = machine.stage.inputShape
    let x = Tensor(shape: [4] + shape, storage: (0..<(4 * shape.reduce(1, *))).map { Float($0 % 7) / 7 })
    let tag = BatchTag(
      sequence: sequence, microIndex: microIndex, microCount: microCount,
      share: microCount > 1 ? 1 / Float(microCount) : nil, activeStage: activeStage)
    let image = Tensor(shape: [4, 8, 8, 1], storage: (0..<256).map { Float($0 % 5) / 5 })  // ContSup's context
    return .train(Stage.Input(x: x, labels: [1, 2, 3, 4], image: image), tag, Int(sequence))
  }

  /// The gradient of a batch's output (e2e) or its DNI target.
  static func gradient(_ machine: Machine, sequence: UInt64) -> Machine.Event {
    let shape = machine.stage.outputShape
    return .gradient(Tensor(shape: [4] + shape, storage: [Float](repeating: 0.01, count: 4 * shape.reduce(1, *))), sequence: sequence, Int(sequence))
  }

  static func error(sequence: UInt64) -> Machine.Event {
    .error(Tensor(shape: [4, 10], storage: [Float](repeating: 0.01, count: 40)), sequence: sequence)
  }

  /// Runs `event` as a shell does — `.work` in its turn — and names what the machine did.
  static func names(_ machine: inout Machine, _ event: Machine.Event) -> [String] {
    var names: [String] = []
    func perform(_ actions: [Machine.Action]) {
      for action in actions {
        if case .work(let work) = action {
          names.append("work")
          perform(machine.run(work))
        } else if let name = name(action) {
          names.append(name)
        }
      }
    }
    perform(machine.on(event))
    return names
  }

  static func name(_ action: Machine.Action) -> String? {
    switch action {
    case .send(.output): "output"
    case .send(.result): "result"
    case .send(.marker): "marker"
    case .send(.inputGradient): "gradient↑"
    case .send(.error): "error↑"
    case .send(.state(let change)): change.round == nil ? "change→" : "round→"
    case .work: "work"
    case .report(let totals): "report \(totals.phase)"
    case .save(.epoch(let n)): "save epoch \(n)"
    case .save(.step(_, let done)): "save step \(done)"
    case .shipTrace: "ship trace"
    case .returnMemory: "return memory"
    case .span(let name, _, _): name
    case .computed: "computed"
    case .note: "note"
    case .progress: nil
    }
  }

  /// One training batch into a stage, by method × schedule × stage: when it sends its output
  /// (before or after its backward), whether it updates now, and what else it sends.
  static let trainCases: [(Method, Schedule, stage: Int, expected: [String])] = [
    (.greedy, .pipelined, 1, ["forward", "output", "work", "backward", "update", "computed"]),
    (.greedy, .lockstep, 1, ["forward", "work", "backward", "update", "computed", "output"]),
    (.greedy, .pipelined, 2, ["forward", "work", "backward", "update", "computed", "result"]),
    (.sid, .pipelined, 1, ["forward", "output", "work", "backward", "update", "computed"]),
    (.contsup, .replay, 1, ["forward", "output", "work", "backward", "update", "computed"]),
    (.kernel, .lockstep, 0, ["forward", "work", "backward", "update", "computed", "output"]),
    (.drtp, .pipelined, 0, ["forward", "output", "work", "backward", "update", "computed"]),
    (.e2e, .lockstep, 1, ["forward", "output"]),
    (.e2e, .lockstep, 2, ["forward", "work", "backward", "gradient↑", "update", "computed", "result"]),
    (.dfa, .pipelined, 1, ["forward", "output", "work", "computed"]),
    (.dfa, .lockstep, 1, ["forward", "output", "work", "computed"]),
    (.dfa, .pipelined, 2, ["forward", "work", "backward", "update", "computed", "error↑", "result"]),
    (.dni, .pipelined, 0, ["forward", "output", "work", "backward", "update", "computed"]),
    (.cdni, .lockstep, 1, ["forward", "work", "backward", "gradient↑", "update", "computed", "output"]),
    (.dni, .pipelined, 2, ["forward", "work", "backward", "gradient↑", "update", "computed", "result"]),
  ]

  @Test(arguments: trainCases.indices)
  func aTrainingBatch(caseIndex: Int) throws {
    let (method, schedule, stage, expected) = Self.trainCases[caseIndex]
    var machine = try Self.machine(method, schedule, stage: stage)
    let before = machine.stage.store.valueArray
    #expect(Self.names(&machine, Self.batch(machine, sequence: 0)) == expected, "\(method) \(schedule) stage \(stage)")
    let updated = expected.contains("update")
    #expect((machine.stage.store.valueArray != before) == updated, "the weights moved exactly when it updated")
    #expect(machine.step == (expected.contains("computed") ? 1 : 0))
  }

  /// What must come back before a stage takes its next batch: e2e's gradient always, DFA's
  /// and DNI's feedback in lockstep only; and what that feedback does when it comes.
  static let feedbackCases: [(Method, Schedule, stage: Int, locked: Bool, expected: [String])] = [
    (.e2e, .lockstep, 1, true, ["backward", "gradient↑", "update", "computed"]),
    (.e2e, .pipelined, 0, true, ["backward", "update", "computed"]),
    (.dfa, .pipelined, 1, false, ["error-update"]),
    (.dfa, .lockstep, 0, true, ["error-update"]),
    (.dni, .pipelined, 1, false, ["synthesiser"]),
    (.cdni, .lockstep, 0, true, ["synthesiser"]),
  ]

  @Test(arguments: feedbackCases.indices)
  func feedbackThatComesBack(caseIndex: Int) throws {
    let (method, schedule, stage, locked, expected) = Self.feedbackCases[caseIndex]
    var machine = try Self.machine(method, schedule, stage: stage)
    #expect(machine.takesFeedback)
    _ = Self.names(&machine, Self.batch(machine, sequence: 0))
    #expect(machine.takesData == !locked && machine.isLocked == locked)
    let event = method == .dfa ? Self.error(sequence: 0) : Self.gradient(machine, sequence: 0)
    #expect(Self.names(&machine, event) == expected)
    #expect(machine.takesData, "nothing is owed any more")
    #expect(machine.expected(forSequence: 0) == .nothing, "feedback twice for one batch is refused")
  }

  /// Local methods are owed nothing and take every batch at once.
  @Test(arguments: [Method.greedy, .sid, .contsup, .kernel, .drtp])
  func localMethodsAreOwedNothing(method: Method) throws {
    var machine = try Self.machine(method, .lockstep, stage: 1)
    #expect(!machine.takesFeedback)
    _ = Self.names(&machine, Self.batch(machine, sequence: 0))
    #expect(machine.takesData && !machine.isLocked && machine.expected(forSequence: 0) == .nothing)
  }

  /// GPipe: every micro-batch's forward goes on at once; then only gradients are taken, and
  /// the one update comes with the batch's last backward.
  @Test func gpipeHoldsAllMicroBatchesAndUpdatesOnce() throws {
    var machine = try Self.machine(.e2e, .lockstep, stage: 1, microBatches: 2)
    #expect(Self.names(&machine, Self.batch(machine, sequence: 0, microIndex: 0, microCount: 2)) == ["forward", "output"])
    #expect(machine.takesData && machine.microBatchesUnderWay == 2)
    #expect(Self.names(&machine, Self.batch(machine, sequence: 1, microIndex: 1, microCount: 2)) == ["forward", "output"])
    #expect(!machine.takesData && machine.expected(forSequence: 1) == .gradient(batch: 4))
    #expect(Self.names(&machine, Self.gradient(machine, sequence: 1)) == ["backward", "gradient↑"])
    #expect(Self.names(&machine, Self.gradient(machine, sequence: 0)) == ["backward", "gradient↑", "update", "computed"])
    #expect(machine.takesData && machine.step == 1 && machine.microBatchesUnderWay == nil)
  }

  /// GPipe's last stage: each micro-batch's loss and backward at once, one update per batch.
  @Test func gpipesLastStageUpdatesAfterTheBatchsLastMicroBatch() throws {
    var machine = try Self.machine(.e2e, .lockstep, stage: 2, microBatches: 2)
    #expect(Self.names(&machine, Self.batch(machine, sequence: 0, microIndex: 0, microCount: 2)) == ["forward", "work", "backward", "gradient↑", "result"])
    #expect(Self.names(&machine, Self.batch(machine, sequence: 1, microIndex: 1, microCount: 2)) == ["forward", "work", "backward", "gradient↑", "update", "computed", "result"])
  }

  /// The old worker's bug: a blocked send re-entered the control loop, and a RESET could end
  /// the stage in the middle of its step. Here the output waits (the shell has not sent it)
  /// when the RESET comes: the rest of the step never runs, nothing is updated, and the
  /// dropped stage takes nothing more.
  @Test func aResetWhileTheOutputWaitsToBeSentEndsTheStep() throws {
    var machine = try Self.machine(.greedy, .pipelined, stage: 1)
    let before = machine.stage.store.valueArray
    let actions = machine.on(Self.batch(machine, sequence: 0))
    guard case .send(.output) = actions[1], case .work(let work) = actions[2] else {
      Issue.record("a pipelined stage sends its output before the rest of its step: \(actions.map(Self.name))")
      return
    }
    #expect(machine.on(.reset).isEmpty)
    #expect(machine.run(work).isEmpty, "no backward, no update after the reset")
    #expect(machine.stage.store.valueArray == before && machine.step == 0)
    #expect(!machine.takesData && !machine.takesFeedback && !machine.canReplay)
    #expect(Self.names(&machine, Self.batch(machine, sequence: 1)).isEmpty)
    #expect(Self.names(&machine, .marker(Marker(.trainEnd, epoch: 0), 9)).isEmpty)
  }

  /// A DFA stage keeps at most 2 × maxInFlight + 2 batches: the oldest is evicted (counted
  /// stale once), and its error, when it comes at last, is dropped — not an error, not an
  /// update; an error for a batch never sent is told apart.
  @Test func feedbackAfterEvictionIsDropped() throws {
    var machine = try Self.machine(.dfa, .pipelined, stage: 0)
    for sequence in 0..<5 { _ = Self.names(&machine, Self.batch(machine, sequence: UInt64(sequence))) }
    #expect(machine.expected(forSequence: 0) == .late)
    #expect(machine.expected(forSequence: 4) == .error(batch: 4))
    #expect(machine.expected(forSequence: 99) == .nothing)
    let before = machine.stage.store.valueArray
    #expect(Self.names(&machine, Self.error(sequence: 0)).isEmpty)
    #expect(machine.stage.store.valueArray == before)
    for sequence in 1..<5 { _ = Self.names(&machine, Self.error(sequence: UInt64(sequence))) }
    let report = machine.on(.marker(Marker(.trainEnd, epoch: 0), 9)).compactMap { action -> PhaseTotals? in
      if case .report(let totals) = action { totals } else { nil }
    }
    #expect(report.first?.feedback?.stale == 1 && report.first?.feedback?.applied == 4)
  }

  /// A saving marker while batches are owed: the stage drains — takes no new batch, takes
  /// feedback — and passes the marker once the last owed batch is back.
  @Test func aMarkerWhileBatchesAreOwedWaitsForThem() throws {
    var machine = try Self.machine(.dfa, .pipelined, stage: 1)
    _ = Self.names(&machine, Self.batch(machine, sequence: 0))
    _ = Self.names(&machine, Self.batch(machine, sequence: 1))
    #expect(Self.names(&machine, .marker(Marker(.trainEnd, epoch: 0), 2)).isEmpty)
    #expect(!machine.takesData && machine.takesFeedback && !machine.isLocked)
    #expect(Self.names(&machine, Self.batch(machine, sequence: 3)).isEmpty, "not taken while draining")
    #expect(Self.names(&machine, Self.error(sequence: 0)) == ["error-update"])
    #expect(Self.names(&machine, Self.error(sequence: 1)) == ["error-update", "feedback-wait", "save epoch 1", "ship trace", "report train", "marker"])
    #expect(machine.takesData)
  }

  /// Feedback that never comes: the drain gives up after the liveness window, counting what
  /// is owed as stale and saying so; so does a lockstep stage waiting for a batch's feedback.
  @Test func waitsForFeedbackEndAfterThePatience() throws {
    let clock = Clock()
    var draining = try Self.machine(.dni, .pipelined, stage: 1, clock: clock)
    _ = Self.names(&draining, Self.batch(draining, sequence: 0))
    #expect(Self.names(&draining, .marker(Marker(.checkpoint, epoch: 0, batchesDone: 1), 1)).isEmpty)
    clock.now = 5_000_000  // the default liveness window: 5 × 1 s
    #expect(Self.names(&draining, .tick(nowMicros: clock.now)).isEmpty)
    clock.now += 1
    #expect(Self.names(&draining, .tick(nowMicros: clock.now)) == ["feedback-wait", "note", "save step 1", "marker"])
    #expect(draining.expected(forSequence: 0) == .late)

    var lockstep = try Self.machine(.dfa, .lockstep, stage: 0, clock: clock)
    _ = Self.names(&lockstep, Self.batch(lockstep, sequence: 0))
    #expect(Self.names(&lockstep, .tick(nowMicros: 10_000_000)).isEmpty && lockstep.isLocked)
    #expect(Self.names(&lockstep, .tick(nowMicros: 15_000_001)) == ["note"])
    #expect(lockstep.takesData)
  }

  /// Markers: the train end saves the epoch's cut, ships the trace and reports; the eval end
  /// reports and returns memory; a checkpoint marker saves a mid-epoch cut.
  @Test func markersCloseTheirPhases() throws {
    var machine = try Self.machine(.greedy, .pipelined, stage: 1)
    #expect(Self.names(&machine, .marker(Marker(.checkpoint, epoch: 0, batchesDone: 3), 0)) == ["save step 3", "marker"])
    #expect(Self.names(&machine, .marker(Marker(.trainEnd, epoch: 0), 1)) == ["save epoch 1", "ship trace", "report train", "marker"])
    let eval = Self.batch(machine, sequence: 2)
    guard case .train(let input, let tag, let envelope) = eval else { return }
    #expect(Self.names(&machine, .eval(input, tag, envelope)) == ["eval", "output"])
    #expect(Self.names(&machine, .marker(Marker(.evalEnd, epoch: 0), 3)) == ["report eval", "marker", "return memory"])
  }

  /// The last stage scores its head and answers the sink; an e2e inner stage's head is
  /// never trained and so never scored.
  @Test func evaluationScoresTheHeadsThatTrain() throws {
    for (method, stage, scored) in [(Method.greedy, 2, 4), (.e2e, 1, 0), (.e2e, 2, 4)] {
      var machine = try Self.machine(method, .lockstep, stage: stage)
      guard case .train(let input, let tag, _) = Self.batch(machine, sequence: 0) else { return }
      #expect(Self.names(&machine, .eval(input, tag, 0)) == ["eval", stage == 2 ? "result" : "output"])
      let reports = machine.on(.marker(Marker(.evalEnd, epoch: 0), 1)).compactMap { action -> PhaseTotals? in
        if case .report(let totals) = action { totals } else { nil }
      }
      #expect(reports.first?.samples == scored, "\(method) stage \(stage)")
    }
  }

  /// Replay (stages after the first): while nothing waits, a buffer draw trains the stage
  /// again, from a training batch to the epoch's train end; stage 0 never replays.
  @Test func replayDrawsWhileIdleBetweenTrainingBatchesOnly() throws {
    var first = try Self.machine(.greedy, .replay, stage: 0)
    _ = Self.names(&first, Self.batch(first, sequence: 0))
    #expect(!first.canReplay)
    var machine = try Self.machine(.greedy, .replay, stage: 1)
    #expect(!machine.canReplay, "nothing to draw before the first batch")
    _ = Self.names(&machine, Self.batch(machine, sequence: 0))
    #expect(machine.canReplay)
    #expect(Self.names(&machine, .idle) == ["replay"])
    _ = Self.names(&machine, .marker(Marker(.trainEnd, epoch: 0), 1))
    #expect(!machine.canReplay && Self.names(&machine, .idle).isEmpty)
  }

  /// `sequential`: a stage that is not the one training passes batches on in its inference
  /// form — no step, no update.
  @Test func sequentialFrozenStagesOnlyPassBatchesOn() throws {
    var machine = try Self.machine(.greedy, .sequential, stage: 0)
    let before = machine.stage.store.valueArray
    #expect(Self.names(&machine, Self.batch(machine, sequence: 0, activeStage: 1)) == ["output"])
    #expect(machine.stage.store.valueArray == before && machine.step == 0)
    #expect(Self.names(&machine, Self.batch(machine, sequence: 1, activeStage: 0)) == ["forward", "output", "work", "backward", "update", "computed"])
  }

  /// Until START and after STOP the machine takes nothing.
  @Test func nothingBeforeStartOrAfterStop() throws {
    var config = Self.smallConfigForMachines(.greedy, .pipelined)
    config.daemon.microBatches = 1
    let stage = try config.buildStage(1, sampleShape: [8, 8, 1], classes: 10)
    var machine = Machine(stage: stage, config: config, batchesPerEpoch: 10, maxInFlight: 1, clock: { 0 })
    #expect(!machine.takesData && Self.names(&machine, Self.batch(machine, sequence: 0)).isEmpty)
    _ = machine.on(.start)
    #expect(machine.takesData)
    _ = machine.on(.stop)
    #expect(!machine.takesData && Self.names(&machine, Self.batch(machine, sequence: 0)).isEmpty)
  }
}
