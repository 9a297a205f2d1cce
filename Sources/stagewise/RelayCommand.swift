import ArgumentParser
import Benchmarks
import Foundation

/// `stagewise relay` (hidden): the delay of `bench network`'s links, run in a namespace of its own.
struct RelayCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "relay",
    abstract: "Hold packets between TUN devices for a delay (bench network's links).",
    shouldDisplay: false)

  @Option(help: "How many hosts (TUN devices tun0 … to make).") var hosts: Int
  @Option(help: "One-way delay in microseconds.") var delayUs: Double

  func run() throws {
    let relay = try LinkRelay(hosts: hosts, delayMicroseconds: delayUs)
    FileHandle.standardOutput.write(Data("relay ready: \(hosts) devices, \(delayUs) µs\n".utf8))
    NetworkHosts.unblockSignals()  // stoppable whatever mask its parent had
    signal(SIGTERM, SIG_DFL)
    relay.run { false }
  }
}
