import ArgumentParser

/// `stagewise render …`: deployment files for cluster engines.
struct Render: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Write deployment files for a cluster engine.", subcommands: [Kubernetes.self])
}
