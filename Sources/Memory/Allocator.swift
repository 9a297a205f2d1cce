#if canImport(Glibc)
  import CMalloc
#endif

/// Process-wide allocator settings for training loops.
public enum Allocator {
  /// Keeps freed memory in the heap instead of returning it to the kernel. A training step
  /// allocates the same large buffers (im2col columns, activations) every time; by default
  /// glibc maps each one fresh (above its mmap threshold) and the kernel faults in and zeroes
  /// every page again, a third of a CNN step's time here.
  public static func keepFreedMemory() {
    #if canImport(Glibc)
      mallopt(M_MMAP_MAX, 0)
      mallopt(M_TRIM_THRESHOLD, Int32.max)
    #endif
  }

  /// Hands the heap's free pages back to the kernel (glibc's malloc_trim). With freed memory
  /// kept, the heap's size is its high-water mark, and fragmentation from the odd-sized
  /// allocations (an epoch's evaluation batches, trace chunks) keeps raising it for a while;
  /// trimming once per epoch makes resident memory follow what is live, at the price of
  /// faulting a few pages in again.
  public static func returnFreedMemory() {
    #if canImport(Glibc)
      _ = malloc_trim(0)
    #endif
  }
}
