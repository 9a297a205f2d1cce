import Testing

@testable import Learning

/// The bounded store a DFA or DNI stage keeps its batches in until their feedback arrives.
@Suite("Feedback store: bounded, stale counted, never waited for")
struct FeedbackStoreTests {
  @Test func feedbackInOrderIsNeverStale() {
    var store = FeedbackStore<String>(capacity: 2)
    for sequence in UInt64(0)..<5 {
      #expect(store.keep("batch \(sequence)", sequence: sequence, step: Int(sequence)) == 0)
      let taken = store.take(sequence)
      #expect(taken?.held.entry == "batch \(sequence)" && taken?.held.step == Int(sequence) && taken?.staleness == 0)
    }
    #expect(store.isEmpty && store.forwarded == 5)
  }

  @Test func stalenessCountsTheBatchesSentForwardSince() {
    var store = FeedbackStore<Int>(capacity: 8)
    for sequence in UInt64(10)..<14 { _ = store.keep(Int(sequence), sequence: sequence, step: 0) }
    #expect(store.take(11)?.staleness == 2)  // 12 and 13 went forward after 11
    #expect(store.take(10)?.staleness == 3)
    #expect(store.take(11) == nil, "taken once")
    #expect(store.holds(13) != nil && store.holds(11) == nil)
  }

  @Test func aFullStoreEvictsTheOldestAndRecognisesItsLateFeedback() {
    var store = FeedbackStore<Int>(capacity: 2)
    #expect(store.keep(0, sequence: 0, step: 0) == 0)
    #expect(store.keep(1, sequence: 1, step: 1) == 0)
    #expect(store.keep(2, sequence: 2, step: 2) == 1)
    #expect(store.holds(0) == nil && store.wasEvicted(0) && !store.wasEvicted(1))
    #expect(!store.wasEvicted(99), "feedback for a batch never sent is not stale: it is refused")
    #expect(store.abandon() == 2 && store.isEmpty && store.wasEvicted(2))
    // The evicted list stays bounded too.
    for sequence in UInt64(3)..<20 { _ = store.keep(0, sequence: sequence, step: 0) }
    #expect(store.evicted.count <= 2)
  }
}
