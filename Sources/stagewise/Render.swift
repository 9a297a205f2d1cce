import ArgumentParser
import Learning

/// `stagewise render …`: deployment files for cluster engines.
struct Render: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Write deployment files for a cluster engine.",
    subcommands: [Kubernetes.self, SlotStages.self])
}

extension Render {
  /// `stagewise render slot-stages`: each worker slot's stage, for engines that number workers.
  struct SlotStages: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "slot-stages",
      abstract:
        "Print each worker slot's stage, comma-separated (\"0,1,1,2\" when stage 1 has two "
        + "replicas): STAGEWISE_SLOT_STAGES for workers numbered by Slurm rank − 1 or by "
        + "Kubernetes completion index.")

    @Option(name: .shortAndLong, help: "YAML config (default: the default config).") var config:
      String?

    func run() throws {
      let runConfig =
        try config.map { path throws(ConfigError) in try RunConfig.load(path: path) } ?? RunConfig()
      Console.print(ReplicaLayout(runConfig).slotStages)
    }
  }
}
