import Foundation
import Learning
import Telemetry
import Wire

/// ASSIGN: each stage's place in the pipeline — whom it sends to, whom it answers, which
/// checkpoint it restores, and under CURVE whose keys it trusts.
extension Scheduler {
  /// Every stage has a worker: tell each one its stage and whom to send to.
  func assignAll() throws {
    let origin = WallClock.micros()
    for stage in 0..<config.stages.count {
      let message = Message(kind: .assign, body: assignment(for: stage, originMicros: origin))
      for case .send(let identity, let stamped) in machine.send(message, to: stage) {
        try sockets.control.send([identity] + stamped.encode())
      }
    }
  }

  func assignment(for stage: Int, originMicros: Int64) -> Assignment {
    let (members, run, stageCount) = (registry.members, machine.run, config.stages.count)
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
    if let ours = sockets.curveKeys?.publicKey { trustKeys(of: &assignment, ours: ours) }
    return assignment
  }

  /// CURVE: whom the stage connects to, and who may connect to it.
  func trustKeys(of assignment: inout Assignment, ours: String) {
    let (stage, stageCount) = (assignment.stage, config.stages.count)
    let key = { (stage: Int) in self.registry.members[stage]!.hello.publicKey! }
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
  }
}
