import Linalg

/// A pointer that may cross into `ComputeThreads.chunks`: each chunk touches only its own range.
struct SharedPointer<T>: @unchecked Sendable {
  let base: UnsafeMutablePointer<T>
  init(_ base: UnsafeMutablePointer<T>) { self.base = base }
  init(_ base: UnsafePointer<T>) { self.base = UnsafeMutablePointer(mutating: base) }
  subscript(i: Int) -> T {
    get { base[i] }
    nonmutating set { base[i] = newValue }
  }
}
