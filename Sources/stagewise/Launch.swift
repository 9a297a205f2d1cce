import ArgumentParser
import Foundation
import Learning
import NN
import Runtime

/// Prints the end of a daemon run.
func summarize(_ outcome: Scheduler.Outcome, directory: String) {
  let rejected =
    outcome.rejected.values.reduce(0, +)
    + outcome.stageRejected.values.flatMap(\.values).reduce(0, +)
  if let last = outcome.reports.last {
    Console.print(
      "final test accuracy \(String(format: "%.2f", last.test.accuracy * 100))%; run in "
        + "\(directory)"
    )
  }
  if rejected > 0 {
    Console.print("rejected messages: \(rejected) (reasons in \(directory)/run.json)")
  }
  if outcome.interrupted {
    Console.print("interrupted: every stage saved its weights in \(directory)")
  }
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
      "\(runConfig.name): \(runConfig.method.rawValue), \(runConfig.stages.count) worker "
        + "processes, \(runConfig.schedule.rawValue), run \(scheduler.directory.path)"
    )
    let launcher = Launcher(
      scheduler: scheduler, executable: Launcher.currentExecutable,
      log: { Console.status("[launch] \($0)") })
    summarize(try launcher.run(), directory: scheduler.directory.path)
  }
}
