import Foundation
import Learning
import TestSupport
import Testing
import Wire

@testable import Runtime

@Suite("The scheduler's control plane, without sockets")
struct SchedulerControlTests {
  /// A worker's garbled goodbye is a rejected message, counted, not the end of the run.
  @Test func aMalformedByeIsRejectedNotFatal() throws {
    var config = RunConfig()
    config.data.source = .synthetic
    config.stages = RunConfig.mlpStages(width: 8, count: 2)
    let (train, test) = try config.loadData()
    let path = temporaryPath("scheduler")
    defer { try? FileManager.default.removeItem(atPath: path) }
    let scheduler = try Scheduler(
      config: config, directory: RunDirectory(path: path, config: config), train: train, test: test, live: false,
      log: { _ in }, report: { _ in })
    _ = scheduler.registry.register(identity: [7], hello: hello(1), nowMicros: 0)
    var bye = Message(kind: .bye, body: ["not": "a goodbye"])
    bye.job = scheduler.job
    scheduler.phase = .running
    #expect(throws: Never.self) { try scheduler.handleControl(bye, from: [7]) }
    #expect(scheduler.rejected["bad-body"] == 1)
  }

  /// Each stage keeps enough mid-epoch cuts that one common to all stages always exists.
  @Test func stepCutsKeptCoverWhatIsInFlight() {
    #expect(Worker.stepCutsToKeep(maxInFlight: 8, every: 2) == 5)
    #expect(Worker.stepCutsToKeep(maxInFlight: 8, every: 3) == 4)
    #expect(Worker.stepCutsToKeep(maxInFlight: 2, every: 50) == 2)
    #expect(Worker.stepCutsToKeep(maxInFlight: 8, every: 0) == 2)
  }
}
