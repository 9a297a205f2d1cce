import Foundation
import Learning
import Telemetry

/// What the user sees of a job: the merged trace, `run.json`, and the live terminal view.
extension Scheduler {
  func writeTrace() throws {
    let layout = registry.layout
    let stages = (0..<layout.slotCount).map { slot in
      let (stage, replica) = layout.place(ofSlot: slot)
      return TraceEvent.processName(
        layout.name(ofSlot: slot), pid: ReplicaLayout.tracePid(stage: stage, replica: replica))
    }
    let head = [TraceEvent.processName("scheduler", pid: 0)] + stages
    try traceSpool.assemble(head: head, into: "\(directory.path)/trace.json")
  }

  func writeManifest(state: String, detail: String?) throws {
    let (byes, live) = (machine.byes, machine.run.liveStats)
    let layout = registry.layout
    let stages = registry.members.enumerated().compactMap { slot, member in
      let (stage, replica) = layout.place(ofSlot: slot)
      return member.map {
        RunManifest.StageEntry(
          stage: stage, host: $0.hello.host, pid: $0.hello.pid, dataEndpoint: $0.hello.dataEndpoint,
          checkpoint: byes[slot]?.checkpoint,
          rejected: byes[slot]?.rejected ?? live[slot]?.rejected,
          replay: byes[slot]?.replay, peakResidentBytes: byes[slot]?.peakResidentBytes,
          bytesSent: byes[slot]?.bytesSent, blasCore: $0.hello.blasCore,
          gradEndpoint: $0.hello.gradEndpoint, bytesSentUpstream: byes[slot]?.bytesSentUpstream,
          replica: layout.counts[stage] > 1 ? replica : nil)
      }
    }
    let refused = sockets.refusedKeys > 0 ? ["refused-key": sockets.refusedKeys] : [:]
    let manifest = RunManifest(
      job: job, control: controlEndpoint, sink: sockets.sinkEndpoint,
      schedule: config.schedule.rawValue, maxInFlight: machine.run.maxInFlight, stages: stages,
      state: state, detail: detail, rejected: rejected.merging(refused) { $1 },
      epochsCompleted: machine.epochsCompleted,
      recoveries: recoveries.isEmpty ? nil : recoveries, kernels: .current)
    try directory.write(manifest, to: "run.json")
  }
}

/// The live view on a terminal: every stage's figures, redrawn in place once a second.
struct LiveTerminal {
  let live: Bool
  private var lastMicros: Int64 = 0
  private var linesShown = 0

  init(live: Bool) { self.live = live }

  mutating func restart() { lastMicros = WallClock.micros() }

  mutating func show(_ machine: SchedulerMachine) {
    guard live, machine.phase == .running else { return }
    let now = WallClock.micros()
    guard now - lastMicros >= 1_000_000 else { return }
    lastMicros = now
    let (stats, run, layout) = (machine.run.liveStats, machine.run, machine.layout)
    let depth = Self.queueDepths(
      stats, layout: layout, fed: run.sequence, maxInFlight: run.maxInFlight)
    let labels = stats.indices.map { layout.label(ofSlot: $0) }
    let lines = LiveView.render(stats, labels: labels, queueDepth: depth)
    var text = linesShown > 0 ? "\u{1B}[\(linesShown)A" : ""
    text += lines.map { "\u{1B}[K" + $0 }.joined(separator: "\n") + "\n"
    FileHandle.standardError.write(Data(text.utf8))
    linesShown = lines.count
  }

  /// Per worker, its stage's queue: the newest sequence the stage before handled (the feed's
  /// for stage 0) less the newest this stage handled, over every replica of each — an estimate
  /// from reports taken at different moments, so clamped to what can be in flight.
  static func queueDepths(
    _ stats: [LiveStats?], layout: ReplicaLayout, fed: UInt64, maxInFlight: Int
  ) -> [Int] {
    let newest = (0..<layout.stageCount).map { stage in
      layout.slots(ofStage: stage).map { stats[$0]?.lastSequence ?? 0 }.max() ?? 0
    }
    return stats.indices.map { slot in
      let stage = layout.place(ofSlot: slot).stage
      let upstream = stage == 0 ? (fed > 0 ? fed - 1 : 0) : newest[stage - 1]
      return min(max(Int(upstream) - Int(newest[stage]), 0), maxInFlight)
    }
  }

  mutating func clear() {
    guard live, linesShown > 0 else { return }
    FileHandle.standardError.write(Data(("\u{1B}[\(linesShown)A" + "\u{1B}[J").utf8))
    linesShown = 0
  }
}
