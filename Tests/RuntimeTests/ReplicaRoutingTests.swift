import Learning
import Testing
import Wire

@testable import Runtime

/// Which replica takes a batch, and which worker takes which replica's slot.
@Suite("Stage replicas: routing and registration")
struct ReplicaRoutingTests {
  /// Every replica is tried first; then the one that acknowledges faster takes more, as far
  /// as what waits there allows.
  @Test func theRouterSendsWhereABatchWouldFinishFirst() {
    var router = ReplicaRouter(replicas: 2)
    #expect(router.choose() == 0)
    router.sent(0, to: 0, atMicros: 0)
    #expect(router.choose() == 1)  // replica 1 unmeasured, nothing waits there
    router.sent(1, to: 1, atMicros: 0)
    let fast = router.acknowledged(0, by: 0, atMicros: 1_000)
    #expect(fast)  // 1 ms a batch
    let slow = router.acknowledged(1, by: 1, atMicros: 4_000)
    #expect(slow)  // 4 ms a batch
    #expect(router.choose() == 0)
    router.sent(2, to: 0, atMicros: 4_000)
    router.sent(3, to: 0, atMicros: 4_000)
    router.sent(4, to: 0, atMicros: 4_000)
    // Three wait at replica 0: (3 + 1) × 1 ms is 4 ms, level with replica 1's 4 ms; fewer waiting wins.
    #expect(router.choose() == 1)
    #expect(router.waiting == [3, 0] && router.taken == [1, 1])
  }

  @Test func aStaleOrForgedAckChangesNothing() {
    var router = ReplicaRouter(replicas: 2)
    router.sent(7, to: 1, atMicros: 0)
    let wrongReplica = router.acknowledged(7, by: 0, atMicros: 5)
    #expect(!wrongReplica)  // not sent there
    let neverSent = router.acknowledged(8, by: 1, atMicros: 5)
    #expect(!neverSent)  // never sent
    let noSuchReplica = router.acknowledged(7, by: 9, atMicros: 5)
    #expect(!noSuchReplica)  // no such replica
    #expect(router.waiting == [0, 1])
  }

  /// A replica dies: what it had not acknowledged comes back oldest first and goes to the
  /// live ones, it is never chosen again, and its tally says what it had handed on.
  @Test func aDeadReplicasBatchesAreSentAgainElsewhere() {
    var router = ReplicaRouter(replicas: 3)
    func batch(_ epoch: Int, eval: Bool = false) -> ReplicaRouter.Sent {
      .init(epoch: epoch, isEval: eval, samples: 16, frames: [[UInt8(epoch)]])
    }
    router.sent(0, to: 1, atMicros: 0, batch: batch(0))
    router.sent(1, to: 1, atMicros: 0, batch: batch(0, eval: true))
    router.sent(2, to: 1, atMicros: 0, batch: batch(1))
    router.sent(3, to: 0, atMicros: 0, batch: batch(1))
    let first = router.acknowledged(0, by: 1, atMicros: 10)
    let second = router.acknowledged(1, by: 1, atMicros: 20)
    #expect(first && second)
    #expect(router.drop(1) == 1 && router.drop(1) == 0)
    #expect(!router.isDrained && router.live == [0, 2])
    let late = router.acknowledged(2, by: 1, atMicros: 30)
    #expect(!late, "the dead one's late ACK changes nothing")
    var sentTo: [Int] = []
    router.resend(atMicros: 40) { r, _ in
      sentTo.append(r)
      return true
    }
    #expect(sentTo == [2] && router.returned.isEmpty && router.waiting == [1, 0, 1])
    #expect((0..<20).allSatisfy { _ in router.choose() != 1 })
    let tally = router.tally(of: 1)
    #expect(tally.map { "\($0.epoch) \($0.isEval) \($0.count.batches) \($0.count.samples)" } == ["0 false 1 16", "0 true 1 16"])
    let third = router.acknowledged(3, by: 0, atMicros: 50)
    let again = router.acknowledged(2, by: 2, atMicros: 50)
    #expect(third && again)
    #expect(router.isDrained)
  }

  /// A socket that takes nothing keeps what came back for the next try.
  @Test func whatCameBackWaitsWhileTheSocketsAreFull() {
    var router = ReplicaRouter(replicas: 2)
    router.sent(5, to: 0, atMicros: 0, batch: .init(epoch: 0, isEval: false, samples: 4))
    router.drop(0)
    router.resend(atMicros: 1) { _, _ in false }
    #expect(router.returned.map(\.sequence) == [5] && !router.isDrained)
    router.resend(atMicros: 2) { r, _ in r == 1 }
    #expect(router.returned.isEmpty && router.waiting == [0, 1])
  }

  /// Workers that ask for a replicated stage fill its slots; one more is refused by name.
  @Test func workersFillAStagesReplicaSlots() throws {
    var registry = Registry(layout: ReplicaLayout(counts: [1, 2]))
    #expect(try registry.register(identity: [1], hello: hello(1, pid: 1), nowMicros: 0).get() == 1)
    #expect(try registry.register(identity: [2], hello: hello(1, pid: 2), nowMicros: 0).get() == 2)
    let refused = registry.register(identity: [3], hello: hello(1, pid: 3), nowMicros: 0)
    guard case .failure(let error) = refused else {
      Issue.record("a third worker took a stage with two replicas")
      return
    }
    #expect(error.message.contains("every replica of stage 1"))
    #expect(try registry.register(identity: [4], hello: hello(nil, pid: 4), nowMicros: 0).get() == 0)
    #expect(registry.isFull)
  }

  /// A worker that asked for no stage floats: one that asks for its stage takes its slot.
  @Test func aFloatingWorkerMovesOverForAReplicaThatAsked() throws {
    var registry = Registry(layout: ReplicaLayout(counts: [2, 1]))
    #expect(try registry.register(identity: [1], hello: hello(nil, pid: 1), nowMicros: 0).get() == 0)
    #expect(try registry.register(identity: [2], hello: hello(0, pid: 2), nowMicros: 0).get() == 1)
    #expect(try registry.register(identity: [3], hello: hello(0, pid: 3), nowMicros: 0).get() == 0)
    #expect(registry.slot(of: [1]) == 2)  // moved to stage 1
  }

  /// The sink counts a marker once every replica of the last stage has brought its copy.
  @Test func theSinkCountsAMarkerOnceEveryLastReplicaBroughtIt() {
    var config = RunConfig()
    config.stages = RunConfig.mlpStages(width: 8, count: 2)
    config.stages[1].replicas = 3
    var run = JobRun(id: 1, config: config, trainCount: 64, testCount: 16, resume: nil)
    var marker = Message(kind: .marker)
    (marker.flags, marker.sequence) = (MarkerFlag.trainEnd.rawValue, 9)
    let copies = (0..<3).map { r in
      marker.replica = UInt16(r)
      return run.lastCopy(of: marker)
    }
    #expect(copies == [false, false, true])
    #expect(run.markerCopies.isEmpty)
    #expect(run.maxInFlight == 2 * 4)  // two per worker
  }
}
