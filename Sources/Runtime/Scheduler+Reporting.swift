import Datasets
import Foundation
import Linalg
import Learning
import Telemetry
import Wire
import ZMQ

/// Ending a job and what the user sees: STOP and BYE, the merged trace, `run.json`, and the
/// live terminal view.
extension Scheduler {
  // MARK: - Stopping

  /// STOP to every stage; collect traces and BYEs for a bounded time.
  func stopWorkers(reason: String, dead: Set<Int> = []) {
    phase = .stopping
    let expected = registry.members.indices.filter { registry.members[$0] != nil && !dead.contains($0) }
    for stage in expected {
      try? sendControl(to: stage, Message(kind: .stop, body: StopBody(reason: reason)))
    }
    let deadline = ContinuousClock.now + .seconds(30)
    while ContinuousClock.now < deadline, !expected.allSatisfy({ byes[$0] != nil }) {
      guard (try? Socket.pollReadable([control], timeoutMilliseconds: 100).isEmpty) == false else { continue }
      try? serviceControl()
    }
    let missing = expected.filter { byes[$0] == nil }
    if !missing.isEmpty { log("no BYE from stages \(missing) within 30 s") }
  }

  func writeTrace() throws {
    var head = [TraceEvent.processName("scheduler", pid: 0)]
    head += (0..<stageCount).map { TraceEvent.processName("stage \($0)", pid: $0 + 1) }
    try traceSpool.assemble(head: head + schedulerTrace.events, into: "\(directory.path)/trace.json")
  }

  func writeManifest(state: String, detail: String?) throws {
    let stages = registry.members.enumerated().compactMap { stage, member in
      member.map {
        RunManifest.StageEntry(
          stage: stage, host: $0.hello.host, pid: $0.hello.pid, dataEndpoint: $0.hello.dataEndpoint,
          checkpoint: byes[stage]?.checkpoint, rejected: byes[stage]?.rejected ?? liveStats[stage]?.rejected, replay: byes[stage]?.replay,
          peakResidentBytes: byes[stage]?.peakResidentBytes, bytesSent: byes[stage]?.bytesSent,
          blasCore: $0.hello.blasCore, gradEndpoint: $0.hello.gradEndpoint, bytesSentUpstream: byes[stage]?.bytesSentUpstream)
      }
    }
    let manifest = RunManifest(
      job: job, control: controlEndpoint, sink: sinkEndpoint, schedule: config.schedule.rawValue,
      maxInFlight: maxInFlight, stages: stages, state: state, detail: detail,
      rejected: rejected.merging(zap.map { ["refused-key": $0.refusedCount] }?.filter { $0.value > 0 } ?? [:]) { $1 },
      epochsCompleted: firstEpoch + reports.count, recoveries: recoveries.isEmpty ? nil : recoveries,
      kernels: .current)
    try directory.write(manifest, to: "run.json")
  }

  // MARK: - Live view

  func showLive() {
    guard live else { return }
    let now = WallClock.micros()
    guard now - lastLiveMicros >= 1_000_000 else { return }
    lastLiveMicros = now
    var depth = [Int](repeating: 0, count: stageCount)
    for k in 0..<stageCount {
      let upstream = k == 0 ? (sequence > 0 ? sequence - 1 : 0) : (liveStats[k - 1]?.lastSequence ?? 0)
      // An estimate from reports taken at different moments: clamp to what can be in flight.
      depth[k] = min(max(Int(upstream) - Int(liveStats[k]?.lastSequence ?? 0), 0), maxInFlight)
    }
    let lines = LiveView.render(liveStats, queueDepth: depth)
    var text = liveLinesShown > 0 ? "\u{1B}[\(liveLinesShown)A" : ""
    text += lines.map { "\u{1B}[K" + $0 }.joined(separator: "\n") + "\n"
    FileHandle.standardError.write(Data(text.utf8))
    liveLinesShown = lines.count
  }

  func clearLive() {
    guard live, liveLinesShown > 0 else { return }
    FileHandle.standardError.write(Data(("\u{1B}[\(liveLinesShown)A" + "\u{1B}[J").utf8))
    liveLinesShown = 0
  }
}
