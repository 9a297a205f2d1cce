import Foundation
import Testing
import Yams

@testable import Clusters
import Learning

@Suite("Kubernetes manifests")
struct KubernetesManifestTests {
  func documents(_ config: RunConfig = RunConfig()) throws -> [[String: Any]] {
    let text = try KubernetesManifests(config: config, image: "registry.example/stagewise:1", namespace: "ml").yaml()
    return try Yams.load_all(yaml: text).compactMap { $0 as? [String: Any] }
  }

  func find(_ docs: [[String: Any]], _ kind: String, _ suffix: String) -> [String: Any]? {
    docs.first { $0["kind"] as? String == kind && (($0["metadata"] as? [String: Any])?["name"] as? String)?.hasSuffix(suffix) == true }
  }

  @Test func defaultConfigRendersEveryPiece() throws {
    let docs = try documents()
    #expect(docs.compactMap { $0["kind"] as? String } == ["ConfigMap", "PersistentVolumeClaim", "Job", "Service", "Service", "Job"])
    let configMap = try #require(find(docs, "ConfigMap", "-config"))
    let yaml = try #require((configMap["data"] as? [String: Any])?["config.yaml"] as? String)
    #expect(try RunConfig.parse(yaml: yaml) == RunConfig())

    let job = try #require(find(docs, "Job", "-stages"))
    let spec = try #require(job["spec"] as? [String: Any])
    #expect(spec["completionMode"] as? String == "Indexed")
    #expect(spec["completions"] as? Int == 4 && spec["parallelism"] as? Int == 4)
    let pod = try #require((spec["template"] as? [String: Any])?["spec"] as? [String: Any])
    let worker = try #require((pod["containers"] as? [[String: Any]])?.first)
    let args = try #require(worker["args"] as? [String])
    #expect(args.prefix(3) == ["worker", "--scheduler", "tcp://stagewise-mlp-greedy-k4-scheduler.ml.svc:5555"])
    #expect(args.contains("$(POD_IP)"))
    let env = try #require(worker["env"] as? [[String: Any]])
    #expect(env.contains { $0["name"] as? String == "OPENBLAS_NUM_THREADS" && $0["value"] as? String == "1" })
    #expect(worker["image"] as? String == "registry.example/stagewise:1")

    let headless = try #require(find(docs, "Service", "-stages"))
    #expect((headless["spec"] as? [String: Any])?["clusterIP"] as? String == "None")
    let service = try #require(find(docs, "Service", "-scheduler"))
    let ports = try #require((service["spec"] as? [String: Any])?["ports"] as? [[String: Any]])
    #expect(ports.first?["port"] as? Int == 5555)
    let schedulerJob = try #require(find(docs, "Job", "-scheduler"))
    let schedulerArgs = (((((schedulerJob["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any])?["containers"] as? [[String: Any]])?.first?["args"] as? [String]) ?? []
    #expect(schedulerArgs.first?.contains("--bind \"$POD_IP\"") == true)
  }

  /// The scheduler ends with its run (a Job, not a Deployment that would start it again) and
  /// resumes after a crash; every pod mounts one ReadWriteMany claim as the run directory.
  @Test func theSchedulerIsAJobAndEveryPodSharesTheRunDirectory() throws {
    var manifests = KubernetesManifests(config: RunConfig(), image: "i", namespace: "ml")
    manifests.storageClass = "nfs"
    let docs = try Yams.load_all(yaml: try manifests.yaml()).compactMap { $0 as? [String: Any] }
    let claim = try #require(find(docs, "PersistentVolumeClaim", "-runs"))
    let claimSpec = try #require(claim["spec"] as? [String: Any])
    #expect(claimSpec["accessModes"] as? [String] == ["ReadWriteMany"])
    #expect(claimSpec["storageClassName"] as? String == "nfs")
    let claimName = try #require((claim["metadata"] as? [String: Any])?["name"] as? String)
    let scheduler = try #require(find(docs, "Job", "-scheduler"))
    for job in [scheduler, try #require(find(docs, "Job", "-stages"))] {
      let pod = try #require(((job["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any])
      let volumes = try #require(pod["volumes"] as? [[String: Any]])
      #expect(volumes.contains { ($0["persistentVolumeClaim"] as? [String: Any])?["claimName"] as? String == claimName })
      let mounts = try #require((pod["containers"] as? [[String: Any]])?.first?["volumeMounts"] as? [[String: Any]])
      #expect(mounts.contains { $0["name"] as? String == "runs" && $0["mountPath"] as? String == "/runs" })
    }
    let pod = try #require(((scheduler["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any])
    #expect(pod["restartPolicy"] as? String == "OnFailure")
    let start = try #require(((pod["containers"] as? [[String: Any]])?.first?["args"] as? [String])?.first)
    #expect(start.contains("--resume /runs/stagewise-mlp-greedy-k4") && start.contains("--config /etc/stagewise/config.yaml --out /runs/stagewise-mlp-greedy-k4"))
    #expect(start.contains("--insecure") && start.contains("--bind \"$POD_IP\""))
  }

  @Test func stageCountAndThreadsFollowTheConfig() throws {
    var config = RunConfig()
    config.stages = RunConfig.mlpStages(width: 64, count: 2)
    config.training.threads = 3
    let docs = try documents(config)
    let job = try #require(find(docs, "Job", "-stages"))
    let spec = try #require(job["spec"] as? [String: Any])
    #expect(spec["completions"] as? Int == 2)
    let worker = try #require(((((spec["template"] as? [String: Any])?["spec"] as? [String: Any])?["containers"]) as? [[String: Any]])?.first)
    #expect(((worker["resources"] as? [String: Any])?["limits"] as? [String: Any])?["cpu"] as? String == "3")
  }

  /// Stage replicas: one pod per worker slot, each completion index mapped to its stage.
  @Test func replicatedStagesGetAPodPerReplica() throws {
    var config = RunConfig()
    config.stages = RunConfig.mlpStages(width: 64, count: 3)
    config.stages[1].replicas = 2
    let job = try #require(find(try documents(config), "Job", "-stages"))
    let spec = try #require(job["spec"] as? [String: Any])
    #expect(spec["completions"] as? Int == 4 && spec["parallelism"] as? Int == 4)
    let env = try #require(container(job, path: ["spec", "template", "spec", "containers"])?["env"] as? [[String: Any]])
    #expect(env.contains { $0["name"] as? String == "STAGEWISE_SLOT_STAGES" && $0["value"] as? String == "0,1,1,2" })
    let plain = container(find(try documents(), "Job", "-stages"), path: ["spec", "template", "spec", "containers"])
    #expect((plain?["env"] as? [[String: Any]])?.contains { $0["name"] as? String == "STAGEWISE_SLOT_STAGES" } == false)
  }

  func container(_ doc: [String: Any]?, path: [String]) -> [String: Any]? {
    var node: Any? = doc
    for key in path { node = (node as? [String: Any])?[key] }
    return (node as? [[String: Any]])?.first
  }

  /// CURVE: keys from a Secret — the scheduler sees its own key only, the workers theirs and
  /// the scheduler's public key — and the config in the ConfigMap points at the mount.
  /// Without it the pods must say --insecure to bind their pod IPs.
  @Test func curveKeysComeFromASecret() throws {
    let plain = try documents()
    let plainWorker = container(find(plain, "Job", "-stages"), path: ["spec", "template", "spec", "containers"])
    #expect((plainWorker?["args"] as? [String])?.contains("--insecure") == true)

    var config = RunConfig()
    config.security.curve = true
    config.security.schedulerKey = "/home/me/scheduler.key"
    let docs = try documents(config)
    let configMap = try #require(find(docs, "ConfigMap", "-config"))
    let yaml = try #require((configMap["data"] as? [String: Any])?["config.yaml"] as? String)
    #expect(try RunConfig.parse(yaml: yaml).security.schedulerKey == "/etc/stagewise/keys/scheduler.key")

    let schedulerJob = try #require(find(docs, "Job", "-scheduler"))
    let schedulerPod = try #require(((schedulerJob["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any])
    let schedulerSecret = try #require((schedulerPod["volumes"] as? [[String: Any]])?.first { $0["name"] as? String == "keys" }?["secret"] as? [String: Any])
    #expect(schedulerSecret["secretName"] as? String == "stagewise-mlp-greedy-k4-keys")
    #expect((schedulerSecret["items"] as? [[String: Any]])?.compactMap { $0["key"] as? String } == ["scheduler.key"])
    let scheduler = try #require(container(schedulerJob, path: ["spec", "template", "spec", "containers"]))
    #expect((scheduler["args"] as? [String])?.first?.contains("--insecure") == false)
    #expect((scheduler["volumeMounts"] as? [[String: Any]])?.contains { $0["mountPath"] as? String == "/etc/stagewise/keys" } == true)

    let job = try #require(find(docs, "Job", "-stages"))
    let workerPod = try #require(((job["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any])
    let workerSecret = try #require((workerPod["volumes"] as? [[String: Any]])?.first { $0["name"] as? String == "keys" }?["secret"] as? [String: Any])
    #expect((workerSecret["items"] as? [[String: Any]])?.compactMap { $0["key"] as? String } == ["workers.key", "scheduler.pub"])
    let worker = try #require(container(job, path: ["spec", "template", "spec", "containers"]))
    let env = try #require(worker["env"] as? [[String: Any]])
    #expect(env.contains { $0["name"] as? String == "STAGEWISE_KEY" && $0["value"] as? String == "/etc/stagewise/keys/workers.key" })
    #expect(env.contains { $0["name"] as? String == "STAGEWISE_SCHEDULER_KEY" && $0["value"] as? String == "/etc/stagewise/keys/scheduler.pub" })
    #expect((worker["args"] as? [String])?.contains("--insecure") == false)
  }
}
