import Foundation

/// The host name or address other processes use to reach sockets bound on `bind`: the one
/// given, else the bound interface itself, else — bound to every interface — this machine's
/// host name (an address like 0.0.0.0 reaches nobody from another host).
public func advertisedHost(bind: String, advertise: String? = nil) -> String {
  if let advertise, !advertise.isEmpty { return advertise }
  return ["0.0.0.0", "*", "::"].contains(bind) ? ProcessInfo.processInfo.hostName : bind
}
