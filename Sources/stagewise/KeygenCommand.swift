import ArgumentParser
import Runtime

/// `stagewise keygen`: a CURVE key pair for a scheduler or a worker.
struct KeygenCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "keygen",
    abstract: "Make a CURVE key pair: NAME.key (secret, mode 0600) and NAME.pub.")

  @Option(help: "Where to write: NAME.key and NAME.pub.")
  var out: String

  func run() throws {
    let keys = try KeyFile.generate(base: out)
    Console.status("wrote \(out).key (keep it secret) and \(out).pub")
    Console.print(keys.publicKey)  // the public key alone on stdout, for allow-lists and scripts
  }
}
