import Testing

@testable import Clusters

@Suite("Rendezvous")
struct RendezvousTests {
  let endpoint = "tcp://10.0.0.1:5555"

  @Test func flagsWinOverTheEnvironment() throws {
    let r = try Rendezvous.resolve(scheduler: endpoint, stage: 3, environment: ["STAGEWISE_SCHEDULER": "tcp://x:1", "STAGEWISE_STAGE": "1"])
    #expect(r == Rendezvous(scheduler: endpoint, stage: 3))
  }

  @Test func slurmNodeListsGiveTheSchedulerHost() throws {
    #expect(Rendezvous.firstHost(ofNodeList: "node[03-05,9],gpu1") == "node03")
    #expect(Rendezvous.firstHost(ofNodeList: "gpu1,node[1-2]") == "gpu1")
    #expect(Rendezvous.firstHost(ofNodeList: "vm") == "vm")
    #expect(Rendezvous.firstHost(ofNodeList: "") == nil)
    let found = try Rendezvous.resolve(
      scheduler: nil, stage: nil, environment: ["SLURM_JOB_NODELIST": "cn[007-008]", "STAGEWISE_PORT": "20042", "SLURM_PROCID": "2"])
    #expect(found == Rendezvous(scheduler: "tcp://cn007:20042", stage: 1))
  }

  @Test func environmentThenSlurmThenKubernetes() throws {
    #expect(try Rendezvous.resolve(scheduler: nil, stage: nil, environment: ["STAGEWISE_SCHEDULER": endpoint, "STAGEWISE_STAGE": "2", "SLURM_PROCID": "1"]).stage == 2)
    #expect(try Rendezvous.resolve(scheduler: endpoint, stage: nil, environment: ["SLURM_PROCID": "3", "JOB_COMPLETION_INDEX": "0"]).stage == 2)
    #expect(try Rendezvous.resolve(scheduler: endpoint, stage: nil, environment: ["JOB_COMPLETION_INDEX": "1"]).stage == 1)
    #expect(try Rendezvous.resolve(scheduler: endpoint, stage: nil, environment: [:]).stage == nil)
  }

  /// With replicas, a Slurm rank or completion index is a worker slot: STAGEWISE_SLOT_STAGES
  /// names each slot's stage; STAGEWISE_STAGE (a replacement worker) still wins.
  @Test func slotStagesMapRanksAndIndexesToStages() throws {
    let slots = ["STAGEWISE_SLOT_STAGES": "0,1,1,2"]
    func stage(_ environment: [String: String]) throws -> Int? {
      try Rendezvous.resolve(scheduler: endpoint, stage: nil, environment: environment.merging(slots) { $1 }).stage
    }
    #expect(try stage(["SLURM_PROCID": "3"]) == 1 && stage(["SLURM_PROCID": "4"]) == 2)
    #expect(try stage(["JOB_COMPLETION_INDEX": "1"]) == 1 && stage(["JOB_COMPLETION_INDEX": "3"]) == 2)
    #expect(try stage(["STAGEWISE_STAGE": "0", "JOB_COMPLETION_INDEX": "3"]) == 0)
    #expect(throws: ClusterError.self) { try stage(["JOB_COMPLETION_INDEX": "4"]) }
    #expect(throws: ClusterError.self) {
      try Rendezvous.resolve(scheduler: endpoint, stage: nil, environment: ["STAGEWISE_SLOT_STAGES": "0,a", "SLURM_PROCID": "1"])
    }
  }

  @Test func badValuesAreExplained() {
    #expect(throws: ClusterError.self) { try Rendezvous.resolve(scheduler: nil, stage: nil, environment: [:]) }
    #expect(throws: ClusterError.self) { try Rendezvous.resolve(scheduler: "localhost:1", stage: nil, environment: [:]) }
    #expect(throws: ClusterError.self) { try Rendezvous.resolve(scheduler: endpoint, stage: nil, environment: ["SLURM_PROCID": "0"]) }
    #expect(throws: ClusterError.self) { try Rendezvous.resolve(scheduler: endpoint, stage: nil, environment: ["STAGEWISE_STAGE": "x"]) }
  }
}
