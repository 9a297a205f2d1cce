import ArgumentParser

struct Stagewise: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "stagewise",
    abstract: "Train deep networks stage by stage, without end-to-end backpropagation.",
    subcommands: [
      Launch.self, SchedulerCommand.self, WorkerCommand.self, KeygenCommand.self, Train.self,
      Evaluate.self, Predict.self, ExportCommand.self, Inspect.self, Render.self, RelayCommand.self,
      Bench.self, Doctor.self,
    ])
}
