import ArgumentParser
import Clusters
import Foundation
import Learning

extension Render {
  struct Kubernetes: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "k8s",
      abstract:
        "Kubernetes manifests: the scheduler as a Job behind a Service, the stages as an Indexed "
        + "Job behind a headless Service, the run directory on a ReadWriteMany claim."
    )

    @Option(name: .shortAndLong, help: "YAML config (default: the default config).") var config:
      String?
    @Option(help: "Container image holding the stagewise binary.") var image = "stagewise:latest"
    @Option(help: "Kubernetes namespace.") var namespace = "default"
    @Option(help: "Size of the run directory's PersistentVolumeClaim.") var storage = "10Gi"
    @Option(
      help: "Storage class of that claim (ReadWriteMany; default: the cluster's default class).")
    var storageClass: String?
    @Option(help: "Write here instead of standard output.") var out: String?

    func run() throws {
      let runConfig =
        try config.map { path throws(ConfigError) in try RunConfig.load(path: path) } ?? RunConfig()
      // The same checks as `launch`, on the data set's shapes, before anything is written.
      let shape =
        runConfig.data.source == .synthetic
        ? [runConfig.data.syntheticSide, runConfig.data.syntheticSide, 1] : [28, 28, 1]
      _ = try runConfig.blueprints(sampleShape: shape, classes: 10)
      var manifests = KubernetesManifests(config: runConfig, image: image, namespace: namespace)
      (manifests.storage, manifests.storageClass) = (storage, storageClass)
      let text = try manifests.yaml()
      if let out { try AtomicFile.write(text, to: out) } else { Console.print(text) }
    }
  }
}
