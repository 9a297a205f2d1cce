import Foundation
import TestSupport
import Testing

/// The arrows ARCHITECTURE.md says must never exist, checked on every source file's imports.
@Suite("Module boundaries")
struct ArchitectureTests {
  static let sources = packageRoot + "/Sources"

  /// Module → the modules its files import.
  static func imports() throws -> [String: Set<String>] {
    var result: [String: Set<String>] = [:]
    for module in try FileManager.default.contentsOfDirectory(atPath: sources) {
      let folder = "\(sources)/\(module)"
      for file in FileManager.default.enumerator(atPath: folder)?.compactMap({ $0 as? String }) ?? [] where file.hasSuffix(".swift") {
        let text = try String(contentsOfFile: "\(folder)/\(file)", encoding: .utf8)
        for line in text.split(separator: "\n") {
          let words = line.trimmingCharacters(in: .whitespaces).split(separator: " ")
          if words.count == 2, words[0] == "import" { result[module, default: []].insert(String(words[1])) }
        }
      }
    }
    return result
  }

  @Test func noArrowThatMustNeverExist() throws {
    let imports = try Self.imports()
    #expect(imports["Runtime"] != nil && imports["NN"] != nil, "read no sources at \(Self.sources)")
    let wrappers = ["CBLAS": ["Linalg"], "CDNNL": ["Linalg"], "CZeroMQ": ["ZMQ"], "CMalloc": ["Memory"], "CCPU": ["Hardware"], "CZlib": ["Datasets"]]
    for (module, used) in imports {
      for (c, owners) in wrappers where used.contains(c) {
        #expect(owners.contains(module), "\(module) imports \(c), which only \(owners) may")
      }
      if ["NN", "Datasets", "Learning"].contains(module) {
        #expect(used.isDisjoint(with: ["ZMQ", "Wire", "Runtime", "Telemetry"]), "\(module) imports \(used.intersection(["ZMQ", "Wire", "Runtime", "Telemetry"]))")
      }
      if ["Wire", "Telemetry"].contains(module) {
        #expect(used.isSubset(of: ["Foundation"]), "\(module) imports \(used)")
      }
      if !["stagewise", "stagewise-fuzz"].contains(module) {
        #expect(used.isDisjoint(with: ["Benchmarks", "Clusters", "Export"]) || ["Benchmarks", "Clusters", "Export"].contains(module), "\(module) imports a tool")
      }
      if module == "Export" {
        #expect(used.isSubset(of: ["Learning", "NN", "Datasets", "Foundation"]), "Export imports \(used)")
      }
    }
  }
}
