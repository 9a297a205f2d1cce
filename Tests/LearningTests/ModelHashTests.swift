import Foundation
import TestSupport
import Testing

@testable import Learning

/// Checkpoints and committed accuracy rows carry model hashes: however the config is declared,
/// the hash of a config must not move, or every earlier run becomes unresumable.
@Suite("Model hash: stable across the config's declaration")
struct ModelHashTests {
  /// Configs that cover every key in the model identity, by name.
  static var configs: [(String, RunConfig)] {
    var list: [(String, RunConfig)] = [("default", RunConfig())]
    for method in Method.allCases {
      var config = RunConfig()
      config.method = method
      list.append(("method \(method.rawValue)", config))
    }
    var c = RunConfig()
    c.method = .dni
    c.dni.synthesiser = .mlp
    c.dni.hidden = 64
    c.dni.auxiliaryLoss = true
    c.dni.optimizer = .sgd
    list.append(("dni settings", c))
    c.dni.learningRate = 3e-3
    list.append(("dni settings, another rate", c))
    c = RunConfig()
    c.method = .sid
    (c.sid.alpha, c.sid.labelSmoothing, c.sid.direction, c.sid.beliefInput) = (0.3, 0.1, .reverse, true)
    list.append(("sid settings", c))
    c = RunConfig()
    c.method = .contsup
    (c.contsup.mode, c.contsup.encoderLearningRateScale) = (.R1E, 0.5)
    list.append(("contsup settings", c))
    c = smallConfig()
    c.data.trainLimit = 300
    c.data.syntheticSide = 12
    list.append(("small synthetic, limited", c))
    c = RunConfig()
    (c.optimizer.kind, c.training.batchSize, c.seed) = (.adam, 64, 7)
    c.stages[2].head.batchnorm = true
    c.stages[3].head.type = .mlpSR
    list.append(("adam, batch 64, seed 7, heads", c))
    c = RunConfig()
    (c.training.epochs, c.optimizer.learningRate, c.schedule, c.daemon.restarts) = (3, 0.2, .lockstep, 9)
    c.learningRateSchedule.kind = .step
    list.append(("what a resumed run may change", c))
    let folder = packageRoot + "/config"
    for file in (try? FileManager.default.contentsOfDirectory(atPath: folder))?.sorted() ?? [] {
      if let config = try? RunConfig.load(path: "\(folder)/\(file)") { list.append((file, config)) }
    }
    return list
  }

  /// Computed by the code before the keys were declared (commit f2c288f).
  static let pinned: [String: String] = [
    "default": "40c1085eadf2c6cb",
    "method e2e": "d5b56c99156b7aa1",
    "method greedy": "40c1085eadf2c6cb",
    "method sid": "2f802b626c64fb2f",
    "method contsup": "36b5ce943cdf42e3",
    "method kernel": "64d0b76060d9640e",
    "method drtp": "968a4dfc9cdc9e45",
    "method dfa": "5725a2f87d3aa6aa",
    "method dni": "9b355bc210a79062",
    "method cdni": "76b84dc8fb6fe8d1",
    "dni settings": "4fb3ce1259c77703",
    "dni settings, another rate": "4fb3ce1259c77703",
    "sid settings": "6110a94d69563112",
    "contsup settings": "c663287eb0afa4ae",
    "small synthetic, limited": "31bbd8ae608c40c2",
    "adam, batch 64, seed 7, heads": "f3e921dbb64ebabf",
    "what a resumed run may change": "40c1085eadf2c6cb",
    "cnn-e2e.yaml": "8fe3e17b86078ae4",
    "mlp-cdni-k4.yaml": "fa8f3ae98fbbe0d3",
    "mlp-drtp-k4.yaml": "368e97ac3f098d3b",
    "mlp-e2e.yaml": "604d8deaca895d1f",
    "mlp-greedy-k2.yaml": "f59dabc132a9ba9d",
    "mlp-greedy-k4.yaml": "467348ba7e343d7d",
    "resnet-c-k16.yaml": "117b832af3c00f84",
    "resnet-c-k2.yaml": "b5ea71c5142e1f62",
    "resnet-c-k4.yaml": "5f415a40d8a89834",
    "resnet-c-k8.yaml": "d01de47bb32e5d2a",
    "smoke.yaml": "12a65061ee82993",
  ]

  @Test func hashesAreThoseEarlierRunsHold() {
    let configs = Self.configs
    #expect(configs.count == Self.pinned.count)
    for (name, config) in configs {
      #expect(config.modelHash == Self.pinned[name], "\(name)")
    }
  }
}
