import Foundation

/// The host name or address other processes use to reach sockets bound on `bind`: the one
/// given, else the bound interface itself, else — bound to every interface — this machine's
/// host name (an address like 0.0.0.0 reaches nobody from another host).
public func advertisedHost(bind: String, advertise: String? = nil) -> String {
  if let advertise, !advertise.isEmpty { return advertise }
  return ["0.0.0.0", "*", "::"].contains(bind) ? ProcessInfo.processInfo.hostName : bind
}

/// Whether `endpoint` (tcp://HOST:PORT or ipc://PATH) is on this machine for certain.
public func isLocalEndpoint(_ endpoint: String) -> Bool {
  if endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://") { return true }
  guard endpoint.hasPrefix("tcp://") else { return false }
  let address = endpoint.dropFirst("tcp://".count)
  let host =
    address.hasPrefix("[")
    ? String(address.dropFirst().prefix { $0 != "]" }) : String(address.prefix { $0 != ":" })
  return isLoopback(host)
}

/// Whether `host` is reachable from this machine only.
public func isLoopback(_ host: String) -> Bool {
  host.hasPrefix("127.") || host == "localhost" || host == "::1"
}

/// Binding beyond loopback without CURVE must be asked for: anyone who can reach the address
/// could join the job or feed it data.
func checkExposure(bind host: String, secured: Bool, insecure: Bool, fix: String)
  throws(RuntimeError)
{
  guard !secured, !insecure, !isLoopback(host) else { return }
  throw RuntimeError(
    "binding \(host) without CURVE lets anyone who can reach it join the job or feed it data: "
      + "\(fix), or pass --insecure on a network you trust"
  )
}
