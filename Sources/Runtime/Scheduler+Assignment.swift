import Foundation
import Learning
import Telemetry
import Wire

/// ASSIGN: each stage's place in the pipeline — whom it sends to, whom it answers, which
/// checkpoint it restores, and under CURVE whose keys it trusts.
extension Scheduler {
  /// Every slot has a worker: tell each one its stage and whom to send to.
  func assignAll() throws {
    let origin = WallClock.micros()
    for slot in registry.members.indices {
      let message = Message(kind: .assign, body: assignment(forSlot: slot, originMicros: origin))
      for case .send(let identity, let stamped) in machine.send(message, to: slot) {
        try sockets.control.send([identity] + stamped.encode())
      }
    }
  }

  func assignment(forSlot slot: Int, originMicros: Int64) -> Assignment {
    let (layout, replica) = (registry.layout, registry.layout.place(ofSlot: slot).replica)
    let stage = layout.place(ofSlot: slot).stage
    // With one replica per stage a stage's members are its slot's; with replicas, its first's.
    let members = (0..<layout.stageCount).map { registry.members[layout.slots(ofStage: $0).first!] }
    let (run, stageCount) = (machine.run, config.stages.count)
    let isLast = stage == stageCount - 1
    let downstream = isLast ? sockets.sinkEndpoint : members[stage + 1]!.hello.dataEndpoint
    let upstream = config.method.returnsInputGradients && stage > 0
    var assignment = Assignment(
      job: run.id, stage: stage, stageCount: stageCount, config: config.yaml(),
      sampleShape: train.sampleShape, classes: train.classes,
      batchesPerEpoch: run.plan.trainOrder.batchesPerEpoch, downstream: downstream,
      runDirectory: directory.path, originMicros: originMicros,
      normalisation: train.normalisation, floatImages: train.raw.isFloat,
      handoff: source.handoffs[stage], nextHandoff: isLast ? nil : source.handoffs[stage + 1],
      upstreamGradient: upstream ? members[stage - 1]!.hello.gradEndpoint : nil,
      restoreFrom: run.resume.flatMap {
        $0.checkpoints.indices.contains(stage) ? $0.checkpoints[stage] : nil
      },
      maxInFlight: run.maxInFlight)
    if config.method == .dfa && isLast {
      assignment.feedbackTargets = (0..<stage).map { members[$0]!.hello.gradEndpoint }
    }
    if layout.isReplicated { assignment.replicas = wiring(stage: stage, replica: replica) }
    if let ours = sockets.curveKeys?.publicKey { trustKeys(of: &assignment, ours: ours) }
    return assignment
  }

  /// A replica's neighbours: every replica of the next stage, who sends to it, where its ACKs
  /// and its state go.
  func wiring(stage: Int, replica: Int) -> ReplicaWiring {
    let layout = registry.layout
    let hellos = { (k: Int) -> [Hello] in
      layout.slots(ofStage: k).map { self.registry.members[$0]!.hello }
    }
    let curve = sockets.curveKeys != nil
    let keys = { (hellos: [Hello]) -> [String]? in
      curve ? hellos.map { $0.publicKey ?? "" } : nil
    }
    let next: [Hello]? = stage == layout.stageCount - 1 ? nil : hellos(stage + 1)
    let previous: [Hello]? = stage == 0 ? nil : hellos(stage - 1)
    var wiring = ReplicaWiring(
      replica: replica, replicas: layout.counts[stage],
      downstreams: next.map { $0.map { $0.dataEndpoint } }, downstreamKeys: next.flatMap(keys),
      senders: stage == 0 ? 1 : layout.counts[stage - 1], acknowledge: nil, acknowledgeKeys: nil,
      peers: hellos(stage).map { $0.gradEndpoint }, peerServerKeys: keys(hellos(stage)),
      averageEvery: config.replicas.averageEvery)
    // The senders route by ACKs when this stage has replicas; DNI's targets go back to the
    // replica of the previous stage that sent the batch.
    let returns = config.method.returnsInputGradients && stage > 0 && layout.counts[stage - 1] > 1
    if layout.counts[stage] > 1 || returns {
      wiring.acknowledge = previous.map { $0.map { $0.gradEndpoint } } ?? [sockets.sinkEndpoint]
      wiring.acknowledgeKeys =
        previous.flatMap(keys) ?? sockets.curveKeys.map { [$0.publicKey] }
    }
    return wiring
  }

  /// CURVE: whom the stage connects to, and who may connect to it.
  func trustKeys(of assignment: inout Assignment, ours: String) {
    let (stage, stageCount) = (assignment.stage, config.stages.count)
    let layout = registry.layout
    let key = { (stage: Int) in
      self.registry.members[layout.slots(ofStage: stage).first!]!.hello.publicKey!
    }
    let isLast = stage == stageCount - 1
    // Who sends to our gradient socket: the next stage (e2e, DNI), the last one (DFA).
    let feedbackFrom =
      isLast
      ? nil
      : config.method.returnsInputGradients
        ? stage + 1 : config.method == .dfa ? stageCount - 1 : nil
    assignment.downstreamKey = isLast ? ours : key(stage + 1)
    assignment.upstreamGradientKey = assignment.upstreamGradient != nil ? key(stage - 1) : nil
    assignment.feedbackTargetKeys = assignment.feedbackTargets != nil ? (0..<stage).map(key) : nil
    assignment.peerKeys =
      [stage == 0 ? ours : key(stage - 1)] + (feedbackFrom.map { [key($0)] } ?? [])
    if assignment.replicas != nil {
      // Every replica of the previous stage (its batches), of the next (their ACKs), of this
      // one (their state).
      let around = [stage - 1, stage, stage + 1].filter { (0..<stageCount).contains($0) }
      let slots = around.flatMap { layout.slots(ofStage: $0) }
      let keys = slots.compactMap { registry.members[$0]?.hello.publicKey }
      assignment.peerKeys = Array(Set(assignment.peerKeys! + keys)).sorted()
    }
  }
}
