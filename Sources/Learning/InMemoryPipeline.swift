import Datasets
import NN

/// The one-process trainer's transport: one `StageMachine` per stage, and what one stage sends
/// another handed over in memory. Each item fed runs until every stage is quiet — the
/// `lockstep` order, which for the local methods gives the numbers of any schedule (each
/// stage sees the same inputs in the same order), and in which feedback is never stale.
struct InMemoryPipeline {
  /// What a message carries besides the stage's input: the batch's images (ContSup's
  /// context; nil for markers), its tag, and whether it trains or evaluates.
  struct Carried {
    var images: Tensor?
    var tag: BatchTag
    var training: Bool
  }

  typealias Machine = StageMachine<Carried>

  var machines: [Machine]
  let handoffs: [Handoff]
  /// Per stage: what arrives on its data path, and what comes back to it.
  private var data: [[Machine.Event]]
  private var upstream: [[Machine.Event]]
  private var sequence: UInt64 = 0
  /// What the stages reported at markers since the last `takeReports()`.
  private(set) var reports: [PhaseTotals] = []
  /// The markers that left the last stage since the last `takeMarkers()`.
  private(set) var markersOut: [Marker] = []
  /// Of the last item fed: each stage's loss (those that had one) and the correct count of
  /// the last stage that trained on it.
  private(set) var losses: [Int: Float] = [:]
  private(set) var correct = 0

  init(machines: [Machine], handoffs: [Handoff]) {
    self.machines = machines
    self.handoffs = handoffs
    data = Array(repeating: [], count: machines.count)
    upstream = Array(repeating: [], count: machines.count)
    for k in machines.indices { _ = self.machines[k].on(.start) }
  }

  /// A training or evaluation batch into stage 0, run until every stage is quiet.
  mutating func feed(
    _ batch: Batch, training: Bool, microIndex: Int = 0, microCount: Int = 1, share: Float? = nil,
    activeStage: Int? = nil
  ) {
    let tag = BatchTag(
      sequence: nextSequence(), microIndex: microIndex, microCount: microCount, share: share,
      activeStage: activeStage)
    let input = handoffs[0].input(after: nil, batch: batch)
    let carried = Carried(images: batch.images, tag: tag, training: training)
    data[0].append(training ? .train(input, tag, carried) : .eval(input, tag, carried))
    (losses, correct) = ([:], 0)
    runUntilQuiet()
  }

  /// A marker into stage 0, run until it has left the last stage.
  mutating func feed(_ marker: Marker) {
    data[0].append(
      .marker(
        marker, Carried(images: nil, tag: BatchTag(sequence: nextSequence()), training: false)))
    runUntilQuiet()
  }

  mutating func takeReports() -> [PhaseTotals] {
    defer { reports = [] }
    return reports
  }

  mutating func takeMarkers() -> [Marker] {
    defer { markersOut = [] }
    return markersOut
  }

  private mutating func nextSequence() -> UInt64 {
    defer { sequence += 1 }
    return sequence
  }

  /// Delivers what waits, feedback first, until nothing does. Nothing can be left waiting in
  /// memory: every wait of a stage is for something another stage sends in the same round.
  private mutating func runUntilQuiet() {
    while true {
      if let k = upstream.indices.first(where: {
        !upstream[$0].isEmpty && machines[$0].takesFeedback
      }) {
        deliver(upstream[k].removeFirst(), to: k)
      } else if let k = data.indices.first(where: { !data[$0].isEmpty && machines[$0].takesData }) {
        deliver(data[k].removeFirst(), to: k)
      } else {
        break
      }
    }
    let stuck = data.indices.filter { !data[$0].isEmpty || !upstream[$0].isEmpty }
    precondition(
      stuck.isEmpty,
      "the in-memory pipeline stalled at stages \(stuck): a stage waits for what no stage sends")
  }

  private mutating func deliver(_ event: Machine.Event, to k: Int) {
    perform(machines[k].on(event), from: k)
  }

  private mutating func perform(_ actions: [Machine.Action], from k: Int) {
    for action in actions {
      switch action {
      case .send(let outgoing): send(outgoing, from: k)
      case .work(let work): perform(machines[k].run(work), from: k)
      case .report(let totals): reports.append(totals)
      case .progress(let progress):
        guard let loss = progress.loss else { continue }
        losses[k] = loss
        if progress.samples > 0 { correct = progress.correct }
      case .save, .shipTrace, .returnMemory, .span, .computed, .note: continue
      }
    }
  }

  private mutating func send(_ outgoing: Machine.Outgoing, from k: Int) {
    switch outgoing {
    case .output(let activations, let pass, let labels, let carried):
      let input = handoffs[k + 1].input(
        activations: activations, of: pass, images: carried.images!, labels: labels)
      data[k + 1].append(
        carried.training ? .train(input, carried.tag, carried) : .eval(input, carried.tag, carried))
    case .marker(let marker, let carried):
      if k + 1 < machines.count {
        data[k + 1].append(.marker(marker, carried))
      } else {
        markersOut.append(marker)
      }
    case .result: break
    case .inputGradient(let gradient, let carried):
      upstream[k - 1].append(.gradient(gradient, sequence: carried.tag.sequence, carried))
    case .error(let error, let carried):
      for j in 0..<k { upstream[j].append(.error(error, sequence: carried.tag.sequence)) }
    case .state: break  // one process runs one replica of each stage: there are no peers
    }
  }
}
