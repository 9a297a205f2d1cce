import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// The delay of a link where the kernel has no `netem`: every host namespace reaches the
/// others through a TUN device whose other end this relay holds. The relay runs in a namespace
/// of its own and makes the devices there (`tun0`, `tun1`, …); whoever set it up then moves
/// each into its host's namespace (a TUN device keeps its file descriptor when it moves). A
/// packet a host sends (after its own `tbf` has shaped it to the link's rate) is read here,
/// held for the one-way delay, and written to the TUN of the host its IPv4 destination names.
/// The delay is constant, so one FIFO keeps the order; nothing else is touched (no checksum,
/// no reordering, no loss but a full queue's).
public final class LinkRelay {
  let delayNanos: UInt64
  var descriptors: [Int32] = []
  /// Host (device) index by the last octet of its address: device k is 192.0.2.(k + 1).
  var route = [Int](repeating: -1, count: 256)
  var queue: [(due: UInt64, host: Int, packet: [UInt8])] = []
  var head = 0
  public private(set) var relayed = 0
  public private(set) var dropped = 0
  /// Packets held at most (beyond: dropped, as a router's full buffer would).
  let capacity = 200_000

  /// Makes `hosts` TUN devices, `tun0` … in this namespace.
  public init(hosts: Int, delayMicroseconds: Double) throws {
    delayNanos = UInt64(delayMicroseconds * 1000)
    for k in 0..<hosts {
      descriptors.append(try Self.openTUN("tun\(k)"))
      route[k + 1] = k
    }
  }

  deinit { for fd in descriptors { close(fd) } }

  /// Makes (or attaches to) the TUN device `name` (IFF_TUN | IFF_NO_PI), non-blocking.
  static func openTUN(_ name: String) throws -> Int32 {
    let fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK)
    guard fd >= 0 else {
      throw BenchmarkError("relay: cannot open /dev/net/tun: \(String(cString: strerror(errno)))")
    }
    var request = [UInt8](repeating: 0, count: 40)  // struct ifreq: name[16], then flags (short)
    for (i, byte) in name.utf8.prefix(15).enumerated() { request[i] = byte }
    let flags: UInt16 = 0x0001 | 0x1000  // IFF_TUN | IFF_NO_PI
    (request[16], request[17]) = (UInt8(flags & 0xFF), UInt8(flags >> 8))
    let tunSetInterface: UInt = 0x4004_54CA  // TUNSETIFF = _IOW('T', 202, int)
    let status = request.withUnsafeMutableBytes { ioctl(fd, tunSetInterface, $0.baseAddress!) }
    guard status == 0 else {
      close(fd)
      throw BenchmarkError(
        "relay: cannot attach to TUN device \(name): \(String(cString: strerror(errno)))")
    }
    return fd
  }

  static func now() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
  }

  /// Relays until `stop()` says so (checked at least every 50 ms).
  public func run(until stop: () -> Bool) {
    var polls = descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
    var buffer = [UInt8](repeating: 0, count: 65536)
    while !stop() {
      var clock = Self.now()
      while head < queue.count, queue[head].due <= clock {
        let (_, host, packet) = queue[head]
        if packet.withUnsafeBytes({ write(descriptors[host], $0.baseAddress, $0.count) })
          == packet.count
        {
          relayed += 1
        } else {
          dropped += 1
        }
        head += 1
      }
      if head > 4096, head * 2 > queue.count {  // drop what was sent
        queue.removeFirst(head)
        head = 0
      }
      // Sleep in poll while the next packet is a millisecond or more away (input wakes it);
      // closer than that, in steps of at most 100 µs (packets arriving meanwhile are stamped
      // up to that late), then look for input without waiting.
      let wait = head < queue.count ? queue[head].due - min(queue[head].due, clock) : 50_000_000
      var timeout = Int32(wait / 1_000_000)
      if timeout == 0 {
        var step = timespec(tv_sec: 0, tv_nsec: Int(min(wait, 100_000)))
        nanosleep(&step, nil)
      }
      timeout = max(0, timeout)
      guard poll(&polls, nfds_t(polls.count), timeout) > 0 else { continue }
      clock = Self.now()
      for (index, entry) in polls.enumerated() where entry.revents & Int16(POLLIN) != 0 {
        while true {
          let n = buffer.withUnsafeMutableBytes {
            read(descriptors[index], $0.baseAddress, $0.count)
          }
          guard n > 0 else { break }
          // IPv4 only: version 4, destination address at bytes 16…19 (192.0.2.x: route by x).
          guard n >= 20, buffer[0] >> 4 == 4, route[Int(buffer[19])] >= 0,
            queue.count - head < capacity
          else {
            dropped += 1
            continue
          }
          queue.append((clock + delayNanos, route[Int(buffer[19])], Array(buffer[0..<n])))
        }
      }
    }
  }
}
