/// When a stage's weights step for a batch, and what it sends besides its output: one small
/// declaration per method (`Method.rule(isLast:)`) and one per schedule
/// (`Schedule.order`), combined for one stage by `StageRule(config:stage:)`. The stage
/// machine reads nothing else of the method or the schedule.
public struct StageRule: Sendable, Equatable {
  /// When the stage's weights step for a batch.
  public enum Step: Sendable, Equatable {
    /// On its local objective, as soon as the batch has gone forward (the last stage's loss
    /// under e2e too); with micro-batches, once all of the batch's are through.
    case local
    /// Once the gradient of its output has come back from the next stage (e2e, GPipe): the
    /// stage holds the batch's pass until then and takes no new batch in between.
    case onGradient
    /// Once the last stage's output error has come back (DFA's hidden stages); the forward
    /// path never waits for it.
    case onError
  }

  public var step: Step
  /// Sends the gradient at its input back to the previous stage: e2e's true gradient, DNI's
  /// synthesiser target. (Stage 0 has no one to send it to.)
  public var returnsInputGradient = false
  /// DFA's last stage: its output error e = ∂L/∂logits to every earlier stage.
  public var sendsError = false
  /// DNI's hidden stages: keep each batch's output until the next stage's gradient at it
  /// comes back, and train the synthesiser on it then.
  public var awaitsTarget = false
  /// The schedule's part.
  public var order = ScheduleOrder()

  /// What comes back later for a batch this stage sent forward, if anything.
  public enum Feedback: Sendable, Equatable { case gradient, error, target }

  public var feedback: Feedback? {
    switch step {
    case .onGradient: .gradient
    case .onError: .error
    case .local: awaitsTarget ? .target : nil
    }
  }

  /// Hands a batch on only after its own update (lockstep); a stage that steps on what comes
  /// back hands on at once whatever the schedule, or it would wait for itself.
  public var handsOnAfterUpdate: Bool { order.handsOnAfterUpdate && step == .local }

  /// Takes a new batch only once what its last one is owed has come back: e2e's gradient
  /// always (update locking), DFA's and DNI's feedback in lockstep.
  public var awaitsFeedbackBeforeNext: Bool {
    step == .onGradient || (order.awaitsFeedbackBeforeNext && feedback != nil)
  }

  /// The rule of stage `stage` of `config`.
  public init(config: RunConfig, stage: Int) {
    self = config.method.rule(isLast: stage == config.stages.count - 1)
    order = config.schedule.order
    order.replaysWhileIdle = order.replaysWhileIdle && stage > 0
    returnsInputGradient = returnsInputGradient && stage > 0
  }

  init(
    step: Step, returnsInputGradient: Bool = false, sendsError: Bool = false,
    awaitsTarget: Bool = false
  ) {
    (self.step, self.returnsInputGradient) = (step, returnsInputGradient)
    (self.sendsError, self.awaitsTarget) = (sendsError, awaitsTarget)
  }
}

/// How a schedule orders one stage's steps against the others'.
public struct ScheduleOrder: Sendable, Equatable {
  /// A batch moves on only after the stage's update: one stage computes at a time.
  public var handsOnAfterUpdate = false
  /// DFA and DNI: a batch's feedback is applied before the next batch is taken.
  public var awaitsFeedbackBeforeNext = false
  /// While no fresh input waits, train on a draw from the replay buffer (stages after the
  /// first).
  public var replaysWhileIdle = false
}

extension Schedule {
  /// How this schedule orders a stage's steps.
  public var order: ScheduleOrder {
    switch self {
    case .pipelined, .sequential: ScheduleOrder()
    case .lockstep: ScheduleOrder(handsOnAfterUpdate: true, awaitsFeedbackBeforeNext: true)
    case .replay: ScheduleOrder(replaysWhileIdle: true)
    }
  }
}
