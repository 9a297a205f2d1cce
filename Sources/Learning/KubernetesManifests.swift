import Foundation
import Yams

/// `stagewise render k8s`: the manifests that run a config on Kubernetes. The scheduler is a
/// Deployment behind a Service; the stages are an Indexed Job (completion index = stage, read
/// by the worker from JOB_COMPLETION_INDEX) behind a headless Service; the config travels in a
/// ConfigMap. Every pod binds and advertises its own pod IP (never all interfaces).
public struct KubernetesManifests {
  public var config: RunConfig
  public var image: String
  public var namespace: String
  public var port = 5555

  public init(config: RunConfig, image: String, namespace: String) {
    (self.config, self.image, self.namespace) = (config, image, namespace)
  }

  var name: String {
    let cleaned = config.name.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "-" }
    return "stagewise-" + String(cleaned).trimmingCharacters(in: CharacterSet(charactersIn: "-"))
  }

  /// The manifests as data, in apply order.
  public func documents() -> [[String: Any]] {
    let labels = ["app.kubernetes.io/name": "stagewise", "stagewise/job": name]
    let podIP: [String: Any] = ["name": "POD_IP", "valueFrom": ["fieldRef": ["fieldPath": "status.podIP"]]]
    let threads = config.training.threads
    let configVolume: [String: Any] = ["name": "config", "configMap": ["name": "\(name)-config"]]
    let mount: [String: Any] = ["name": "config", "mountPath": "/etc/stagewise"]
    let schedulerAddress = "tcp://\(name)-scheduler.\(namespace).svc:\(port)"
    func meta(_ suffix: String, _ extra: [String: String] = [:]) -> [String: Any] {
      ["name": "\(name)-\(suffix)", "namespace": namespace, "labels": labels.merging(extra) { $1 }]
    }
    let configMap: [String: Any] = [
      "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("config"), "data": ["config.yaml": config.yaml()],
    ]
    let schedulerLabels = labels.merging(["stagewise/role": "scheduler"]) { $1 }
    let scheduler: [String: Any] = [
      "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("scheduler", ["stagewise/role": "scheduler"]),
      "spec": [
        "replicas": 1, "selector": ["matchLabels": schedulerLabels],
        "template": [
          "metadata": ["labels": schedulerLabels],
          "spec": [
            "containers": [[
              "name": "scheduler", "image": image, "command": ["stagewise"],
              "args": ["scheduler", "--config", "/etc/stagewise/config.yaml", "--bind", "$(POD_IP)", "--port", "\(port)", "--out", "/runs/\(name)"],
              "env": [podIP], "ports": [["name": "control", "containerPort": port]], "volumeMounts": [mount],
              "resources": ["requests": ["cpu": "1", "memory": "1Gi"]],
            ]],
            "volumes": [configVolume],
          ],
        ],
      ],
    ]
    let schedulerService: [String: Any] = [
      "apiVersion": "v1", "kind": "Service", "metadata": meta("scheduler"),
      "spec": ["selector": schedulerLabels, "ports": [["name": "control", "port": port, "targetPort": port]]],
    ]
    let stageLabels = labels.merging(["stagewise/role": "stage"]) { $1 }
    let stages: [String: Any] = [
      "apiVersion": "batch/v1", "kind": "Job", "metadata": meta("stages", ["stagewise/role": "stage"]),
      "spec": [
        "completionMode": "Indexed", "completions": config.stages.count, "parallelism": config.stages.count,
        "backoffLimitPerIndex": config.daemon.restarts, "maxFailedIndexes": 0,
        "template": [
          "metadata": ["labels": stageLabels],
          "spec": [
            "restartPolicy": "Never", "subdomain": "\(name)-stages",
            "containers": [[
              "name": "worker", "image": image, "command": ["stagewise"],
              "args": ["worker", "--scheduler", schedulerAddress, "--bind", "$(POD_IP)", "--advertise", "$(POD_IP)"],
              "env": [podIP, ["name": "OPENBLAS_NUM_THREADS", "value": "\(threads)"]],
              "resources": ["requests": ["cpu": "\(threads)", "memory": "1Gi"], "limits": ["cpu": "\(threads)"]],
            ]],
          ],
        ],
      ],
    ]
    let stagesService: [String: Any] = [
      "apiVersion": "v1", "kind": "Service", "metadata": meta("stages"),
      "spec": ["clusterIP": "None", "selector": stageLabels],
    ]
    return [configMap, scheduler, schedulerService, stagesService, stages]
  }

  /// The manifests as one multi-document YAML file.
  public func yaml() throws -> String {
    try documents().map { try Yams.dump(object: $0, sortKeys: true) }.joined(separator: "---\n")
  }
}
