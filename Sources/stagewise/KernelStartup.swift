import Foundation
import Linalg

/// Makes this process run the OpenBLAS kernels its CPU deserves, before anything computes:
/// keeps it, starts the program again with `OPENBLAS_CORETYPE` set (OpenBLAS reads it only
/// when it loads), or refuses a core name OpenBLAS does not know. See `KernelChoice`.
enum KernelStartup {
  static func run() {
    let choice = KernelChoice.current
    if let warning = choice.warning { Console.status("warning: \(warning)") }
    switch choice.action {
    case .keep:
      return
    case .refuse(let message):
      Console.status("error: \(message)")
      exit(2)
    case .reexecute(let variables):
      for (name, value) in variables {
        if let value { setenv(name, value, 1) } else { unsetenv(name) }
      }
      execv("/proc/self/exe", CommandLine.unsafeArgv)
      // Only reached when exec failed: carry on with what is loaded, and say so.
      Console.status(
        "warning: could not restart with other OpenBLAS kernels "
          + "(\(String(cString: strerror(errno)))); running \(BLAS.coreName)"
      )
    }
  }
}
