import Foundation
import Learning
import Yams

/// `stagewise render k8s`: the manifests that run a config on Kubernetes. The scheduler is a
/// Job behind a Service (it ends when the run does; restarted after a crash, it resumes the
/// run); the stages are an Indexed Job (completion index = stage, read by the worker from
/// JOB_COMPLETION_INDEX) behind a headless Service; the config travels in a ConfigMap; the
/// With stage replicas (`stages[k].replicas`) the Indexed Job has one pod per worker slot and
/// `STAGEWISE_SLOT_STAGES` maps each completion index to its stage. The
/// run directory is a PersistentVolumeClaim (ReadWriteMany) that every pod mounts at /runs, so
/// workers' checkpoints land beside the scheduler's logs and a replaced stage finds them.
/// Every pod binds and advertises its own pod IP (never all interfaces).
///
/// With `security.curve` the keys come from a Secret, `NAME-keys`, that the user creates
/// (`kubectl create secret generic NAME-keys --from-file=scheduler.key --from-file=scheduler.pub
/// --from-file=workers.key`): the scheduler mounts its key alone, each worker the workers' key
/// and the scheduler's public key. Without CURVE the pods talk in the clear (`--insecure`).
public struct KubernetesManifests {
  public var config: RunConfig
  public var image: String
  public var namespace: String
  public var port = 5555
  /// The run directory's claim: size, and storage class (nil: the cluster's default, which
  /// must offer ReadWriteMany).
  public var storage = "10Gi"
  public var storageClass: String?

  public init(config: RunConfig, image: String, namespace: String) {
    (self.config, self.image, self.namespace) = (config, image, namespace)
  }

  /// Where the Secret's files are mounted in the pods.
  static let keyDirectory = "/etc/stagewise/keys"

  var name: String {
    let cleaned = config.name.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "-" }
    return "stagewise-" + String(cleaned).trimmingCharacters(in: CharacterSet(charactersIn: "-"))
  }

  /// The manifests as data, in apply order.
  public func documents() -> [[String: Any]] {
    let labels = ["app.kubernetes.io/name": "stagewise", "stagewise/job": name]
    let podIP: [String: Any] = [
      "name": "POD_IP", "valueFrom": ["fieldRef": ["fieldPath": "status.podIP"]],
    ]
    let threads = config.training.threads
    let configVolume: [String: Any] = ["name": "config", "configMap": ["name": "\(name)-config"]]
    let mount: [String: Any] = ["name": "config", "mountPath": "/etc/stagewise"]
    let schedulerAddress = "tcp://\(name)-scheduler.\(namespace).svc:\(port)"
    func meta(_ suffix: String, _ extra: [String: String] = [:]) -> [String: Any] {
      ["name": "\(name)-\(suffix)", "namespace": namespace, "labels": labels.merging(extra) { $1 }]
    }
    let curve = config.security.curve
    var podConfig = config
    if curve { podConfig.security.schedulerKey = "\(Self.keyDirectory)/scheduler.key" }
    let configMap: [String: Any] = [
      "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("config"),
      "data": ["config.yaml": podConfig.yaml()],
    ]
    // The Secret's files a pod may see, as a volume and its mount.
    func keys(_ files: [String]) -> (volume: [String: Any], mount: [String: Any]) {
      (
        [
          "name": "keys",
          "secret": [
            "secretName": "\(name)-keys", "defaultMode": 0o400,
            "items": files.map { ["key": $0, "path": $0] },
          ],
        ],
        ["name": "keys", "mountPath": Self.keyDirectory, "readOnly": true]
      )
    }
    let schedulerKeys = keys(["scheduler.key"])
    let workerKeys = keys(["workers.key", "scheduler.pub"])
    let security = curve ? [String]() : ["--insecure"]
    let workerKeyEnv: [[String: Any]] =
      curve
      ? [
        ["name": "STAGEWISE_KEY", "value": "\(Self.keyDirectory)/workers.key"],
        ["name": "STAGEWISE_SCHEDULER_KEY", "value": "\(Self.keyDirectory)/scheduler.pub"],
      ] : []
    var claimSpec: [String: Any] = [
      "accessModes": ["ReadWriteMany"], "resources": ["requests": ["storage": storage]],
    ]
    if let storageClass { claimSpec["storageClassName"] = storageClass }
    let claim: [String: Any] = [
      "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta("runs"),
      "spec": claimSpec,
    ]
    let runsVolume: [String: Any] = [
      "name": "runs", "persistentVolumeClaim": ["claimName": "\(name)-runs"],
    ]
    let runsMount: [String: Any] = ["name": "runs", "mountPath": "/runs"]
    let runDirectory = "/runs/\(name)"
    // A first start trains from the config; a restart after a crash resumes the run.
    let common = "--bind \"$POD_IP\" --port \(port)" + security.map { " " + $0 }.joined()
    let start =
      "if [ -f \(runDirectory)/config.yaml ]; then exec stagewise scheduler --resume "
      + "\(runDirectory) \(common); "
      + "else exec stagewise scheduler --config /etc/stagewise/config.yaml --out \(runDirectory) "
      + "\(common); fi"
    let schedulerLabels = labels.merging(["stagewise/role": "scheduler"]) { $1 }
    let scheduler: [String: Any] = [
      "apiVersion": "batch/v1", "kind": "Job",
      "metadata": meta("scheduler", ["stagewise/role": "scheduler"]),
      "spec": [
        "backoffLimit": config.daemon.restarts,
        "template": [
          "metadata": ["labels": schedulerLabels],
          "spec": [
            "restartPolicy": "OnFailure",
            "containers": [
              [
                "name": "scheduler", "image": image, "command": ["/bin/sh", "-c"], "args": [start],
                "env": [podIP], "ports": [["name": "control", "containerPort": port]],
                "volumeMounts": [mount, runsMount] + (curve ? [schedulerKeys.mount] : []),
                "resources": ["requests": ["cpu": "1", "memory": "1Gi"]],
              ]
            ],
            "volumes": [configVolume, runsVolume] + (curve ? [schedulerKeys.volume] : []),
          ],
        ],
      ],
    ]
    let schedulerService: [String: Any] = [
      "apiVersion": "v1", "kind": "Service", "metadata": meta("scheduler"),
      "spec": [
        "selector": schedulerLabels,
        "ports": [["name": "control", "port": port, "targetPort": port]],
      ],
    ]
    let stageLabels = labels.merging(["stagewise/role": "stage"]) { $1 }
    let layout = ReplicaLayout(config)
    let slotStages: [[String: Any]] =
      layout.isReplicated
      ? [["name": "STAGEWISE_SLOT_STAGES", "value": layout.slotStages]] : []
    let stages: [String: Any] = [
      "apiVersion": "batch/v1", "kind": "Job",
      "metadata": meta("stages", ["stagewise/role": "stage"]),
      "spec": [
        "completionMode": "Indexed", "completions": layout.slotCount,
        "parallelism": layout.slotCount,
        "backoffLimitPerIndex": config.daemon.restarts, "maxFailedIndexes": 0,
        "template": [
          "metadata": ["labels": stageLabels],
          "spec": [
            "restartPolicy": "Never", "subdomain": "\(name)-stages",
            "volumes": [runsVolume] + (curve ? [workerKeys.volume] : []),
            "containers": [
              [
                "name": "worker", "image": image, "command": ["stagewise"],
                "args": [
                  "worker", "--scheduler", schedulerAddress, "--bind", "$(POD_IP)", "--advertise",
                  "$(POD_IP)",
                ] + security,
                "env": [podIP, ["name": "OPENBLAS_NUM_THREADS", "value": "\(threads)"]]
                  + slotStages + workerKeyEnv,
                "volumeMounts": [runsMount] + (curve ? [workerKeys.mount] : []),
                "resources": [
                  "requests": ["cpu": "\(threads)", "memory": "1Gi"],
                  "limits": ["cpu": "\(threads)"],
                ],
              ]
            ],
          ],
        ],
      ],
    ]
    let stagesService: [String: Any] = [
      "apiVersion": "v1", "kind": "Service", "metadata": meta("stages"),
      "spec": ["clusterIP": "None", "selector": stageLabels],
    ]
    return [configMap, claim, scheduler, schedulerService, stagesService, stages]
  }

  /// The manifests as one multi-document YAML file.
  public func yaml() throws -> String {
    try documents().map { try Yams.dump(object: $0, sortKeys: true) }.joined(separator: "---\n")
  }
}
