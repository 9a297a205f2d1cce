import ArgumentParser
import Foundation
import Learning
import NN
import Runtime

/// `stagewise scheduler`: the coordinator alone; workers join from anywhere.
struct SchedulerCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "scheduler", abstract: "Coordinate one training job; workers register with it.")

  @OptionGroup var job: JobOptions

  @Option(help: "Interface to bind (overrides daemon.bind).")
  var bind: String?

  @Option(help: "Control port (overrides daemon.controlPort; 0 picks one).")
  var port: Int?

  @Option(
    help: "Seconds to wait for every stage to register (also for a failed stage's replacement).")
  var waitSeconds = 300

  @Option(
    help: ArgumentHelp(
      "Shell command that starts a worker for a stage whose worker died, e.g. 'srun --overlap -n1 "
        + "stagewise worker'.",
      discussion:
        "Else STAGEWISE_ON_VACANCY. {stage} in the command and STAGEWISE_STAGE in its environment "
        + "name the stage. Without either, any worker that registers takes the vacant stage."
    ))
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
        try replacements.start(
          stage: stage, executable: "/bin/sh", arguments: ["-c", command], environment: environment)
      }
    }
    let outcome = try scheduler.run(registrationTimeout: .seconds(waitSeconds))
    summarize(outcome, directory: scheduler.directory.path)
  }
}
