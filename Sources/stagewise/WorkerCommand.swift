import ArgumentParser
import Clusters
import Foundation
import Learning
import Memory
import NN
import Runtime

/// `stagewise worker`: one stage, wherever it runs.
struct WorkerCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "worker",
    abstract: "Run one stage: register with the scheduler and train what it assigns.")

  @Option(help: "The scheduler's control endpoint, tcp://HOST:PORT (else STAGEWISE_SCHEDULER).")
  var scheduler: String?

  @Option(
    help:
      ArgumentHelp(
        "Ask for this stage (else STAGEWISE_STAGE, SLURM_PROCID − 1, JOB_COMPLETION_INDEX, or any "
          + "vacant).")
  )
  var stage: Int?

  @Option(help: "Interface the data socket binds.")
  var bind = "127.0.0.1"

  @Option(
    help:
      ArgumentHelp(
        "Host name or address other stages use to reach this one (default: --bind, or this host's "
          + "name when binding 0.0.0.0).")
  )
  var advertise: String?

  @Option(help: "Seconds to wait for the scheduler to assign a stage.")
  var waitSeconds = 120

  // A Z85 key may begin with '-': the value is taken whatever it starts with.
  @Option(
    parsing: .unconditional,
    help:
      "CURVE: this worker's key file or secret key (else STAGEWISE_KEY); from `stagewise keygen`.")
  var key: String?

  @Option(
    parsing: .unconditional,
    help: "CURVE: the scheduler's public key, or its .pub file (else STAGEWISE_SCHEDULER_KEY).")
  var schedulerKey: String?

  @Flag(help: "Allow --bind beyond loopback without CURVE.")
  var insecure = false

  @Option(help: .hidden) var protocolVersion: Int?

  func run() throws {
    let environment = ProcessInfo.processInfo.environment
    let rendezvous = try Rendezvous.resolve(
      scheduler: scheduler, stage: stage, environment: environment)
    Signals.install(ignoreInterrupt: environment["STAGEWISE_MANAGED"] == "1")
    Allocator.keepFreedMemory()
    var options = Worker.Options(scheduler: rendezvous.scheduler, requestedStage: rendezvous.stage)
    options.bindHost = bind
    options.advertiseHost = advertise
    options.registrationTimeout = .seconds(waitSeconds)
    options.insecure = insecure
    options.curve = try (key ?? environment["STAGEWISE_KEY"]).map { try KeyFile.keyPair($0) }
    options.schedulerKey = try (schedulerKey ?? environment["STAGEWISE_SCHEDULER_KEY"]).map {
      try KeyFile.publicKey($0)
    }
    if let protocolVersion { options.protocolVersion = protocolVersion }
    let tag = rendezvous.stage.map { "stage \($0)" } ?? "worker \(getpid())"
    // which job step this is
    if let job = environment["SLURM_JOB_ID"], let step = environment["SLURM_STEP_ID"] {
      Console.status(
        "[\(tag)] slurm step \(job).\(step), task \(environment["SLURM_PROCID"] ?? "?") on "
          + "\(environment["SLURMD_NODENAME"] ?? ProcessInfo.processInfo.hostName)"
      )
    }
    let worker = try Worker(options, log: { Console.status("[\(tag)] \($0)") })
    try worker.run()
  }
}
