import Foundation
import Testing
import Yams

@testable import Learning

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
    #expect(docs.compactMap { $0["kind"] as? String } == ["ConfigMap", "Deployment", "Service", "Service", "Job"])
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
    let deployment = try #require(find(docs, "Deployment", "-scheduler"))
    let schedulerArgs = (((((deployment["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any])?["containers"] as? [[String: Any]])?.first?["args"] as? [String]) ?? []
    #expect(schedulerArgs.contains("--bind") && schedulerArgs.contains("$(POD_IP)"))
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
}
