import Testing

@testable import Learning

@Suite("Replay buffer: priority-LIFO draws and the reuse cap")
struct ReplayBufferTests {
  @Test func drawsLeastUsedThenMostRecent() {
    var buffer = ReplayBuffer<String>(capacity: 3)
    buffer.write("a", producerStep: 0)
    buffer.write("b", producerStep: 1)
    buffer.write("c", producerStep: 2)
    // All unused: most recent first.
    #expect(buffer.draw(producerStep: 2)?.payload == "c")
    #expect(buffer.draw(producerStep: 2)?.payload == "b")
    #expect(buffer.draw(producerStep: 2)?.payload == "a")
    // All used once: most recent again.
    #expect(buffer.draw(producerStep: 2)?.payload == "c")
    buffer.write("d", producerStep: 3)  // overwrites the oldest, "a"
    #expect(buffer.entries.map(\.payload) == ["d", "b", "c"])
    #expect(buffer.draw(producerStep: 3)?.payload == "d")  // unused beats used
    #expect(buffer.draw(producerStep: 3)?.payload == "d")  // d and b used once: d is newer
    #expect(buffer.draw(producerStep: 3)?.payload == "b")  // now the only one used once
  }

  @Test func reuseCapStallsAndCounts() {
    var buffer = ReplayBuffer<Int>(capacity: 2, maxReuse: 2)
    buffer.write(1, producerStep: 0, uses: 1)  // trained on when it arrived
    #expect(buffer.draw(producerStep: 0)?.payload == 1)
    #expect(buffer.draw(producerStep: 0) == nil)
    #expect(buffer.stalls == 1)
    buffer.write(2, producerStep: 4, uses: 1)
    #expect(buffer.draw(producerStep: 6)?.payload == 2)
    #expect(buffer.draw(producerStep: 6) == nil)
    let stats = buffer.statistics
    #expect(stats.draws == 2 && stats.stalls == 2 && stats.maxAge == 2 && stats.meanAge == 1 && stats.meanUses == 2)
  }

  @Test func anEmptyBufferIsNoStallAndRemoveAllEmptiesIt() {
    var buffer = ReplayBuffer<Int>(capacity: 2, maxReuse: 1)
    #expect(buffer.draw(producerStep: 0) == nil)
    #expect(buffer.stalls == 0, "nothing to draw is not the reuse cap")
    buffer.write(1, producerStep: 0)
    #expect(buffer.draw(producerStep: 0)?.payload == 1)
    buffer.removeAll()
    #expect(buffer.entries.isEmpty && buffer.draw(producerStep: 1) == nil && buffer.stalls == 0)
    #expect(buffer.statistics.draws == 1)
  }

  @Test func ringOverwritesInWriteOrder() {
    var buffer = ReplayBuffer<Int>(capacity: 2)
    for step in 0..<5 { buffer.write(step, producerStep: step) }
    #expect(Set(buffer.entries.map(\.payload)) == [3, 4])
  }
}
