import ArgumentParser
import Foundation
import Learning
import NN
import Linalg
import Runtime

/// Prints the end of a daemon run.
func summarize(_ outcome: Scheduler.Outcome, directory: String) {
  let rejected = outcome.rejected.values.reduce(0, +) + outcome.stageRejected.values.flatMap(\.values).reduce(0, +)
  if let last = outcome.reports.last {
    Console.print("final test accuracy \(String(format: "%.2f", last.test.accuracy * 100))%; run in \(directory)")
  }
  if rejected > 0 { Console.print("rejected messages: \(rejected) (reasons in \(directory)/run.json)") }
  if outcome.interrupted { Console.print("interrupted: every stage saved its weights in \(directory)") }
}

/// `stagewise launch`: scheduler plus one worker process per stage on this machine.
struct Launch: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Train with a local cluster: a scheduler and one worker process per stage.")

  @OptionGroup var job: JobOptions

  @Flag(help: "Allow daemon.bind beyond loopback without CURVE.")
  var insecure = false

  func run() throws {
    let runConfig = try job.resolved()
    Signals.install()
    let scheduler = try job.makeScheduler(runConfig)
    scheduler.allowInsecure = insecure
    Console.kernels()
    Console.status(
      "\(runConfig.name): \(runConfig.method.rawValue), \(runConfig.stages.count) worker processes, \(runConfig.schedule.rawValue), run \(scheduler.directory.path)")
    let launcher = Launcher(scheduler: scheduler, executable: Launcher.currentExecutable, log: { Console.status("[launch] \($0)") })
    summarize(try launcher.run(), directory: scheduler.directory.path)
  }
}

/// `stagewise scheduler`: the coordinator alone; workers join from anywhere.
struct SchedulerCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "scheduler", abstract: "Coordinate one training job; workers register with it.")

  @OptionGroup var job: JobOptions

  @Option(help: "Interface to bind (overrides daemon.bind).")
  var bind: String?

  @Option(help: "Control port (overrides daemon.controlPort; 0 picks one).")
  var port: Int?

  @Option(help: "Seconds to wait for every stage to register (also for a failed stage's replacement).")
  var waitSeconds = 300

  @Option(help: ArgumentHelp(
    "Shell command that starts a worker for a stage whose worker died, e.g. 'srun --overlap -n1 stagewise worker'.",
    discussion: "Else STAGEWISE_ON_VACANCY. {stage} in the command and STAGEWISE_STAGE in its environment name the stage. Without either, any worker that registers takes the vacant stage."))
  var onVacancy: String?

  @Flag(help: "Allow binding beyond loopback without CURVE (security.curve).")
  var insecure = false

  func run() throws {
    var runConfig = try job.resolved()
    if let bind { runConfig.daemon.bind = bind }
    if let port { runConfig.daemon.controlPort = port }
    try runConfig.validate()
    Signals.install()
    let scheduler = try job.makeScheduler(runConfig)
    scheduler.allowInsecure = insecure
    try scheduler.bind()
    Console.kernels(prefix: "[scheduler] ")
    // The address workers need, on stdout, so scripts can read it.
    Console.print("scheduler \(scheduler.controlEndpoint)")
    let replacements = StageProcesses(log: { Console.status("[scheduler] \($0)") })
    defer { replacements.reapAll() }
    if let onVacancy = onVacancy ?? ProcessInfo.processInfo.environment["STAGEWISE_ON_VACANCY"] {
      scheduler.onVacancy = { stage in
        let command = onVacancy.replacingOccurrences(of: "{stage}", with: "\(stage)")
        Console.status("[scheduler] starting a worker for stage \(stage): \(command)")
        var environment = ["STAGEWISE_STAGE": "\(stage)"]
        if ProcessInfo.processInfo.environment["STAGEWISE_SCHEDULER"] == nil {
          environment["STAGEWISE_SCHEDULER"] = scheduler.advertisedControlEndpoint
        }
        try replacements.start(stage: stage, executable: "/bin/sh", arguments: ["-c", command], environment: environment)
      }
    }
    let outcome = try scheduler.run(registrationTimeout: .seconds(waitSeconds))
    summarize(outcome, directory: scheduler.directory.path)
  }
}

/// `stagewise worker`: one stage, wherever it runs.
struct WorkerCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "worker", abstract: "Run one stage: register with the scheduler and train what it assigns.")

  @Option(help: "The scheduler's control endpoint, tcp://HOST:PORT (else STAGEWISE_SCHEDULER).")
  var scheduler: String?

  @Option(help: "Ask for this stage (else STAGEWISE_STAGE, SLURM_PROCID − 1, JOB_COMPLETION_INDEX, or any vacant).")
  var stage: Int?

  @Option(help: "Interface the data socket binds.")
  var bind = "127.0.0.1"

  @Option(help: "Host name or address other stages use to reach this one (default: --bind, or this host's name when binding 0.0.0.0).")
  var advertise: String?

  @Option(help: "Seconds to wait for the scheduler to assign a stage.")
  var waitSeconds = 120

  @Option(help: "CURVE: this worker's key file or secret key (else STAGEWISE_KEY); from `stagewise keygen`.")
  var key: String?

  @Option(help: "CURVE: the scheduler's public key, or its .pub file (else STAGEWISE_SCHEDULER_KEY).")
  var schedulerKey: String?

  @Flag(help: "Allow --bind beyond loopback without CURVE.")
  var insecure = false

  @Option(help: .hidden) var protocolVersion: Int?

  func run() throws {
    let environment = ProcessInfo.processInfo.environment
    let rendezvous = try Rendezvous.resolve(scheduler: scheduler, stage: stage, environment: environment)
    Signals.install(ignoreInterrupt: environment["STAGEWISE_MANAGED"] == "1")
    Allocator.keepFreedMemory()
    var options = Worker.Options(scheduler: rendezvous.scheduler, requestedStage: rendezvous.stage)
    options.bindHost = bind
    options.advertiseHost = advertise
    options.registrationTimeout = .seconds(waitSeconds)
    options.insecure = insecure
    options.curve = try (key ?? environment["STAGEWISE_KEY"]).map { try KeyFile.keyPair($0) }
    options.schedulerKey = try (schedulerKey ?? environment["STAGEWISE_SCHEDULER_KEY"]).map { try KeyFile.publicKey($0) }
    if let protocolVersion { options.protocolVersion = protocolVersion }
    let tag = rendezvous.stage.map { "stage \($0)" } ?? "worker \(getpid())"
    if let job = environment["SLURM_JOB_ID"], let step = environment["SLURM_STEP_ID"] {  // which job step this is
      Console.status("[\(tag)] slurm step \(job).\(step), task \(environment["SLURM_PROCID"] ?? "?") on \(environment["SLURMD_NODENAME"] ?? ProcessInfo.processInfo.hostName)")
    }
    let worker = try Worker(options, log: { Console.status("[\(tag)] \($0)") })
    try worker.run()
  }
}

/// `stagewise keygen`: a CURVE key pair for a scheduler or a worker.
struct KeygenCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "keygen", abstract: "Make a CURVE key pair: NAME.key (secret, mode 0600) and NAME.pub.")

  @Option(help: "Where to write: NAME.key and NAME.pub.")
  var out: String

  func run() throws {
    let keys = try KeyFile.generate(base: out)
    Console.status("wrote \(out).key (keep it secret) and \(out).pub")
    Console.print(keys.publicKey)  // the public key alone on stdout, for allow-lists and scripts
  }
}
