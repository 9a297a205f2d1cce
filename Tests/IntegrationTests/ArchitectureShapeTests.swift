import Foundation
import TestSupport
import Testing

/// What ARCHITECTURE.md says of the code's shape, checked on the sources: the files it names,
/// one poll site per process, short functions in Runtime, a small scheduler, and methods
/// declared in one place.
@Suite("Architecture: the shape ARCHITECTURE.md draws")
struct ArchitectureShapeTests {
  static let sources = packageRoot + "/Sources"

  static func text(_ path: String) throws -> String {
    try String(contentsOfFile: "\(sources)/\(path)", encoding: .utf8)
  }

  static func files(in module: String) -> [String] {
    let names = FileManager.default.enumerator(atPath: "\(sources)/\(module)")?.compactMap { $0 as? String }
    return (names ?? []).filter { $0.hasSuffix(".swift") }.sorted().map { "\(module)/\($0)" }
  }

  /// Code without comments and string literals' contents (braces in strings do not count).
  static func code(_ line: Substring) -> String {
    let bare = line.replacingOccurrences(of: #""([^"\\]|\\.)*""#, with: "\"\"", options: .regularExpression)
    return bare.range(of: "//").map { String(bare[..<$0.lowerBound]) } ?? bare
  }

  @Test func everyFileThePageNamesExists() throws {
    let page = try String(contentsOfFile: packageRoot + "/ARCHITECTURE.md", encoding: .utf8)
    let named = page.matches(of: /`([A-Za-z-]+\/[A-Za-z+]+\.swift)`/).map { String($0.1) }
    #expect(named.count > 30, "read \(named.count) file names")
    for path in Set(named) {
      #expect(FileManager.default.fileExists(atPath: "\(Self.sources)/\(path)"), "ARCHITECTURE.md names \(path)")
    }
  }

  @Test func eachProcessTypePollsInOnePlace() throws {
    var sites: [String] = []
    for path in Self.files(in: "Runtime") {
      for line in try Self.text(path).split(separator: "\n", omittingEmptySubsequences: false)
      where Self.code(line).contains(/Socket\.poll(Readable)?\(/) {
        sites.append(path)
      }
    }
    #expect(sites == ["Runtime/Scheduler.swift", "Runtime/Worker.swift"], "poll sites: \(sites)")
  }

  @Test func noRuntimeFunctionIsLongerThan40Lines() throws {
    let declaration = /^\s*(@\w+ )*((public|private|fileprivate|internal|static|mutating|override|nonisolated) )*(func |init[(<?]|deinit)/
    var long: [String] = []
    for path in Self.files(in: "Runtime") {
      let lines = try Self.text(path).split(separator: "\n", omittingEmptySubsequences: false)
      for start in lines.indices where lines[start].contains(declaration) {
        var (depth, opened, end) = (0, false, start)
        while end < lines.count {
          let code = Self.code(lines[end])
          depth += code.filter { $0 == "{" }.count - code.filter { $0 == "}" }.count
          opened = opened || code.contains("{")
          if opened && depth <= 0 { break }
          end += 1
        }
        if end - start + 1 > 40 { long.append("\(path):\(start + 1) (\(end - start + 1) lines)") }
      }
    }
    #expect(long.isEmpty, "functions over 40 lines: \(long)")
  }

  @Test func theSchedulerHoldsAtMost15StoredProperties() throws {
    let lines = try Self.text("Runtime/Scheduler.swift").split(separator: "\n", omittingEmptySubsequences: false)
    let start = try #require(lines.firstIndex { $0.hasPrefix("public final class Scheduler") })
    let end = try #require(lines[start...].firstIndex { $0 == "}" })
    let property = try Regex("^  ((public|private|internal|lazy)(\\((set)\\))? )*(var|let) ")
    let stored = lines[start..<end].filter { line in
      let code = Self.code(line)
      guard code.contains(property) else { return false }
      // `var x: T { … }` is computed; `var x: T = { … }()` and `var x: T` are stored.
      guard let brace = code.firstIndex(of: "{") else { return true }
      return code.firstIndex(of: "=").map { $0 < brace } ?? false
    }
    #expect(stored.count <= 15 && stored.count >= 5, "\(stored.count) stored properties: \(stored)")
  }

  @Test func theStageMachineAndItsTransportsNameNoMethod() throws {
    let places =
      ["Learning/StageMachine.swift", "Learning/StageMachine+Steps.swift", "Learning/Trainer.swift",
       "Learning/InMemoryPipeline.swift", "Runtime/StageSession.swift"]
      + Self.files(in: "Runtime").filter { $0.hasPrefix("Runtime/Worker") }
    for path in places {
      for (i, line) in try Self.text(path).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        let code = Self.code(line)
        #expect(
          !code.contains(/\.(e2e|greedy|sid|contsup|kernel|drtp|dfa|dni|cdni)\b/),
          "\(path):\(i + 1) names a method: \(line) — declare it in Learning/Method.swift")
      }
    }
  }
}
