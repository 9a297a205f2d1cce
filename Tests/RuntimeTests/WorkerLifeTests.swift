import Datasets
import Learning
import Testing
import Wire

@testable import Runtime

/// The worker's life without sockets: every transition of `WorkerLife`.
@Suite("Worker state machine")
struct WorkerLifeTests {
  static let second: Int64 = 1_000_000

  func assignment(job: UInt32 = 7) -> Assignment {
    Assignment(
      job: job, stage: 1, stageCount: 3, config: "", sampleShape: [8, 8, 1], classes: 10, batchesPerEpoch: 5,
      downstream: "tcp://127.0.0.1:1", runDirectory: "/tmp", originMicros: 0, normalisation: ImageNormalisation(mean: [0], std: [1]), floatImages: false,
      handoff: Handoff(), nextHandoff: Handoff())
  }

  /// A life that has said HELLO at t = 0 and waits 10 s for ASSIGN, 20 s for START.
  func registering() -> WorkerLife {
    var life = WorkerLife(scheduler: "tcp://s:1", assignWait: .seconds(10), startWait: .seconds(20))
    #expect(life.on(.started(nowMicros: 0)) == [.sendHello])
    #expect(life.state == .registering)
    return life
  }

  /// …then assigned job 7 (heartbeat 1 s, liveness 3) and started at t = 1 s.
  func training() -> WorkerLife {
    var life = registering()
    _ = life.on(.tick(nowMicros: Self.second))
    #expect(life.on(.assign(assignment())) == [.setUp(assignment())])
    #expect(life.state == .building(job: 7))
    #expect(life.on(.built(heartbeatMicros: Self.second, liveness: 3)) == [.sendReady])
    #expect(life.state == .assigned(job: 7))
    #expect(life.on(.start) == [])
    #expect(life.state == .training(job: 7))
    return life
  }

  @Test func helloAssignReadyStartTrain() {
    _ = training()
  }

  @Test func aResetWhileWaitingSaysHelloAgain() {
    var life = registering()
    #expect(life.on(.reset(reason: "stage 2 died")) == [.sendHello])
    #expect(life.state == .registering)
  }

  @Test func aResetAfterAssignDropsTheStageInEveryState() {
    var building = registering()
    _ = building.on(.assign(assignment()))
    #expect(building.on(.reset(reason: "r")) == [.dropStage(job: 7, reason: "r"), .sendHello])
    #expect(building.state == .registering)
    #expect(building.on(.built(heartbeatMicros: Self.second, liveness: 3)) == [], "a stage built after its reset is not reported")
    #expect(building.state == .registering)

    var assigned = registering()
    _ = assigned.on(.assign(assignment()))
    _ = assigned.on(.built(heartbeatMicros: Self.second, liveness: 3))
    #expect(assigned.on(.reset(reason: "r")) == [.dropStage(job: 7, reason: "r"), .sendHello])
    #expect(assigned.state == .registering)
  }

  @Test func aResetDuringTrainingDropsTheStageAndTheNextAssignmentStartsAfresh() {
    var life = training()
    #expect(life.on(.reset(reason: "stage 0 died")) == [.dropStage(job: 7, reason: "stage 0 died"), .sendHello])
    #expect(life.state == .registering)
    #expect(life.on(.assign(assignment(job: 8))) == [.setUp(assignment(job: 8))])
    _ = life.on(.built(heartbeatMicros: Self.second, liveness: 3))
    _ = life.on(.start)
    #expect(life.state == .training(job: 8))
  }

  @Test func stopDuringTrainingLeavesAndNothingChangesItsCourse() {
    var life = training()
    #expect(life.on(.stop(reason: "finished")) == [])
    #expect(life.state == .leaving(reason: "finished"))
    #expect(life.isOver)
    // While it drains (saves, ships its trace, says BYE), a second STOP, a RESET, an ERROR or
    // silence change nothing.
    #expect(life.on(.stop(reason: "again")) == [])
    #expect(life.on(.reset(reason: "late")) == [])
    #expect(life.on(.error(message: "late")) == [])
    #expect(life.on(.tick(nowMicros: 1000 * Self.second)) == [])
    #expect(life.state == .leaving(reason: "finished"))
  }

  @Test func aSignalDuringTrainingLeavesBeforeItFails() {
    var life = training()
    _ = life.on(.signal(2))
    #expect(life.state == .leaving(reason: "signal 2"))
  }

  @Test func stopErrorOrSignalBeforeTrainingFail() {
    var stopped = registering()
    _ = stopped.on(.stop(reason: "finished"))
    #expect(stopped.state == .failed(reason: "the scheduler stopped the job while this worker waited for a stage assignment: finished"))

    var refused = registering()
    _ = refused.on(.error(message: "stage 4 does not exist"))
    #expect(refused.state == .failed(reason: "the scheduler refused this worker: stage 4 does not exist"))

    var interrupted = registering()
    _ = interrupted.on(.assign(assignment()))
    _ = interrupted.on(.built(heartbeatMicros: Self.second, liveness: 3))
    _ = interrupted.on(.signal(15))
    #expect(interrupted.state == .failed(reason: "interrupted while waiting for START"))

    var ended = training()
    _ = ended.on(.error(message: "stage 1 could not save"))
    #expect(ended.state == .failed(reason: "the scheduler ended the job: stage 1 could not save"))
  }

  @Test func aSchedulerLostWhileRegisteringFailsAfterTheWaitAndHeartbeatsExtendIt() {
    var life = registering()
    #expect(life.on(.tick(nowMicros: 9 * Self.second)) == [])
    // A scheduler heartbeat (it has not assigned yet) restarts the wait and is answered.
    #expect(life.on(.heartbeat(echo: false)) == [.sendHeartbeat])
    #expect(life.on(.tick(nowMicros: 18 * Self.second)) == [])
    #expect(life.state == .registering)
    _ = life.on(.tick(nowMicros: 19 * Self.second + 1))
    #expect(life.failure?.hasPrefix("no answer from tcp://s:1 within 10.0 seconds while waiting for a stage assignment") == true, "\(life.state)")
  }

  @Test func startHasItsOwnWait() {
    var life = registering()
    _ = life.on(.assign(assignment()))
    _ = life.on(.built(heartbeatMicros: Self.second, liveness: 3))
    _ = life.on(.tick(nowMicros: 15 * Self.second))  // past the assignment's 10 s, within START's 20 s
    #expect(life.state == .assigned(job: 7))
    _ = life.on(.tick(nowMicros: 20 * Self.second + 1))
    #expect(life.failure?.contains("within 20.0 seconds while waiting for START") == true, "\(life.state)")
  }

  @Test func trainingSendsHeartbeatsWhenDueAndFailsAfterLivenessOfSilence() {
    var life = training()  // heard at 1 s
    _ = life.on(.sent(nowMicros: Self.second))
    #expect(life.on(.tick(nowMicros: Self.second + Self.second / 2)) == [])
    #expect(life.on(.tick(nowMicros: 2 * Self.second)) == [.sendHeartbeat])
    _ = life.on(.sent(nowMicros: 2 * Self.second))
    // Any word from the scheduler counts: a heartbeat at 3.5 s moves the limit to 6.5 s.
    _ = life.on(.tick(nowMicros: 3 * Self.second + Self.second / 2))
    _ = life.on(.heartbeat(echo: true))
    _ = life.on(.sent(nowMicros: 6 * Self.second))
    _ = life.on(.tick(nowMicros: 6 * Self.second + Self.second / 2))
    #expect(life.state == .training(job: 7))
    _ = life.on(.tick(nowMicros: 6 * Self.second + Self.second / 2 + 1))
    #expect(life.state == .failed(reason: "lost the scheduler: nothing heard for 3000 ms (liveness 3 × 1000 ms)"))
  }

  @Test func messagesOutOfPlaceAreCountedNotObeyed() {
    var life = registering()
    #expect(life.on(.start) == [.countRejection("unexpected-START")])
    #expect(life.on(.other(.ready)) == [.countRejection("unexpected-READY")])
    #expect(life.state == .registering)
    var busy = training()
    #expect(busy.on(.assign(assignment(job: 9))) == [.countRejection("unexpected-ASSIGN")])
    #expect(busy.on(.heartbeat(echo: false)) == [], "a training worker's own heartbeats are on its clock")
    #expect(busy.state == .training(job: 7))
  }

  /// Every control event in every state, against a table: what it does and where it leads.
  /// (`started` comes once, first; time has tests of its own above.)
  @Test func everyEventInEveryState() {
    typealias State = WorkerLife.State
    let lives: [(String, WorkerLife)] = {
      var building = registering()
      _ = building.on(.assign(assignment()))
      var assigned = building
      _ = assigned.on(.built(heartbeatMicros: Self.second, liveness: 3))
      var leaving = training()
      _ = leaving.on(.stop(reason: "finished"))
      var failed = registering()
      _ = failed.on(.error(message: "no"))
      return [("registering", registering()), ("building", building), ("assigned", assigned), ("training", training()), ("leaving", leaving), ("failed", failed)]
    }()
    let events: [(String, WorkerLife.Event)] = [
      ("assign", .assign(assignment(job: 9))), ("built", .built(heartbeatMicros: Self.second, liveness: 3)),
      ("start", .start), ("reset", .reset(reason: "r")), ("stop", .stop(reason: "s")), ("error", .error(message: "e")),
      ("heartbeat", .heartbeat(echo: false)), ("echo", .heartbeat(echo: true)), ("other", .other(.ready)),
      ("signal", .signal(15)), ("sent", .sent(nowMicros: Self.second)),
    ]
    let job7 = State.building(job: 7), ready7 = State.assigned(job: 7), training7 = State.training(job: 7)
    let drop: [WorkerLife.Action] = [.dropStage(job: 7, reason: "r"), .sendHello]
    func unexpected(_ kind: String) -> [WorkerLife.Action] { [.countRejection("unexpected-\(kind)")] }
    // state → event → (actions, next state); nil: the state stays as it was.
    let table: [String: [String: ([WorkerLife.Action], State?)]] = [
      "registering": [
        "assign": ([.setUp(assignment(job: 9))], .building(job: 9)), "built": ([], nil), "start": (unexpected("START"), nil),
        "reset": ([.sendHello], nil), "stop": ([], .failed(reason: "the scheduler stopped the job while this worker waited for a stage assignment: s")),
        "error": ([], .failed(reason: "the scheduler refused this worker: e")), "heartbeat": ([.sendHeartbeat], nil), "echo": ([], nil),
        "other": (unexpected("READY"), nil), "signal": ([], .failed(reason: "interrupted while waiting for a stage assignment")), "sent": ([], nil),
      ],
      "building": [
        "assign": (unexpected("ASSIGN"), nil), "built": ([.sendReady], ready7), "start": (unexpected("START"), nil),
        "reset": (drop, .registering), "stop": ([], .failed(reason: "the scheduler stopped the job while this worker waited for START: s")),
        "error": ([], .failed(reason: "the scheduler refused this worker: e")), "heartbeat": ([.sendHeartbeat], nil), "echo": ([], nil),
        "other": (unexpected("READY"), nil), "signal": ([], .failed(reason: "interrupted while waiting for START")), "sent": ([], nil),
      ],
      "assigned": [
        "assign": (unexpected("ASSIGN"), nil), "built": ([], nil), "start": ([], training7),
        "reset": (drop, .registering), "stop": ([], .failed(reason: "the scheduler stopped the job while this worker waited for START: s")),
        "error": ([], .failed(reason: "the scheduler refused this worker: e")), "heartbeat": ([.sendHeartbeat], nil), "echo": ([], nil),
        "other": (unexpected("READY"), nil), "signal": ([], .failed(reason: "interrupted while waiting for START")), "sent": ([], nil),
      ],
      "training": [
        "assign": (unexpected("ASSIGN"), nil), "built": ([], nil), "start": (unexpected("START"), nil),
        "reset": (drop, .registering), "stop": ([], .leaving(reason: "s")),
        "error": ([], .failed(reason: "the scheduler ended the job: e")), "heartbeat": ([], nil), "echo": ([], nil),
        "other": (unexpected("READY"), nil), "signal": ([], .leaving(reason: "signal 15")), "sent": ([], nil),
      ],
    ]
    #expect(job7 == lives[1].1.state)
    for (stateName, life) in lives {
      for (eventName, event) in events {
        var next = life
        let actions = next.on(event)
        // Leaving (draining) and failed: nothing changes a course already taken.
        let (expectedActions, expectedState) = table[stateName]?[eventName] ?? ([], nil)
        #expect(actions == expectedActions, "\(eventName) while \(stateName)")
        #expect(next.state == (expectedState ?? life.state), "\(eventName) while \(stateName)")
      }
    }
  }
}

/// A replica among several that is sent a signal asks to LEAVE and trains on until its STOP;
/// a lone stage leaves at once.
@Suite("Worker state machine: a replica leaves at a cut")
struct WorkerDepartureTests {
  func training(replicas: Int) -> WorkerLife {
    var assignment = WorkerLifeTests().assignment()
    assignment.replicas = ReplicaWiring(
      replica: 1, replicas: replicas, downstreams: ["tcp://127.0.0.1:2"], downstreamKeys: nil, senders: 1,
      acknowledge: nil, acknowledgeKeys: nil, peers: [], peerServerKeys: nil, averageEvery: 16)
    var life = WorkerLife(scheduler: "tcp://s:1", assignWait: .seconds(10))
    _ = life.on(.started(nowMicros: 0))
    _ = life.on(.assign(assignment))
    _ = life.on(.built(heartbeatMicros: WorkerLifeTests.second, liveness: 3))
    _ = life.on(.start)
    #expect(life.state == .training(job: 7))
    return life
  }

  @Test func aSignalledReplicaAsksOnceAndLeavesAtItsStop() {
    var life = training(replicas: 2)
    #expect(life.on(.signal(15)) == [.sendLeave] && life.state == .training(job: 7))
    #expect(life.on(.signal(15)) == [], "the signal stays raised: asked once")
    _ = life.on(.heartbeat(echo: false))
    #expect(life.state == .training(job: 7))
    _ = life.on(.stop(reason: "stage 1 replica 1 leaves at a cut"))
    #expect(life.state == .leaving(reason: "stage 1 replica 1 leaves at a cut"))
  }

  @Test func withoutItsStopItLeavesAfterTheWait() {
    var life = training(replicas: 2)
    _ = life.on(.signal(15))
    _ = life.on(.tick(nowMicros: WorkerLife.departWait.micros + 2 * WorkerLifeTests.second))
    #expect(life.state == .leaving(reason: "asked to leave; no STOP from the scheduler within 30.0 seconds"))
  }

  @Test func aLoneStageLeavesAtOnce() {
    var life = training(replicas: 1)
    #expect(life.on(.signal(15)) == [] && life.state == .leaving(reason: "signal 15"))
  }
}
