import NN

/// The steps themselves: a local step (greedy, SID, ContSup, kernel, DRTP, DNI, DFA's last
/// stage, e2e's last stage), a held forward and its backward (e2e, GPipe), feedback that comes
/// back (DFA's error, DNI's target), evaluation, a replay draw, a marker.
extension StageMachine {
  // MARK: - Local steps

  /// A training batch under a local step: forward, the output on at once (unless the
  /// schedule hands on after the update), then the rest of the step as `.work`.
  mutating func trainLocal(_ input: Stage.Input, _ tag: BatchTag, _ envelope: Envelope) -> [Action]
  {
    // `sequential`: the tag names the one stage that trains; the others only pass data on, in
    // their inference form (a frozen stage's running statistics and dropout stay as they are).
    if let active = tag.activeStage, active != index {
      let pass = stage.forward(input, training: false)
      return [
        .send(
          isLast
            ? .result(envelope)
            : .output(pass.activations, pass: pass, labels: input.labels, envelope))
      ]
    }
    replay?.open = true
    let t0 = clock()
    let pass = stage.forward(input)
    let (micros, t1) = since(t0)
    var actions: [Action] = [.span("forward", startMicros: t0, endMicros: t1)]
    if !isLast && !rule.handsOnAfterUpdate {
      actions.append(.send(.output(pass.activations, pass: pass, labels: input.labels, envelope)))
    }
    let work = Work(
      pass: pass, input: input, tag: tag, envelope: envelope, learningRate: learningRate,
      step: step, forwardMicros: micros)
    return actions + [.work(work)]
  }

  /// The local step after the forward: loss, backward and update (a DFA hidden stage waits
  /// for its error instead), the late hand-on, the error or result, what is owed kept.
  mutating func finishLocal(_ w: Work) -> [Action] {
    var actions: [Action] = []
    var computed = w.forwardMicros
    var result: LossResult?
    if rule.step == .local {
      let t0 = clock()
      // DNI: the gradient at our input is the previous stage's synthesiser target.
      let (local, dx) = stage.localStep(
        w.pass, labels: w.input.labels, inputGradient: rule.returnsInputGradient,
        lossScale: w.tag.share ?? 1)
      let t1 = clock()
      actions.append(.span("backward", startMicros: t0, endMicros: t1))
      if let dx { actions.append(.send(.inputGradient(dx, w.envelope))) }
      computed += t1 - t0
      result = local
      backprop.microCount = w.tag.microCount
      backprop.backwards += 1
      if backprop.backwards == backprop.microCount {
        let t2 = clock()
        stage.optimizer.update(stage.store, learningRate: w.learningRate)
        let t3 = clock()
        actions.append(.span("update", startMicros: t2, endMicros: t3))
        computed += t3 - t2
        computed += backprop.computeMicros
        backprop = BackpropState()
        actions += stepped()
        actions.append(.computed(micros: computed))
      } else {
        backprop.computeMicros += computed
      }
    } else {
      // The step clock counts batches taken in (a DFA hidden stage's update for this batch
      // comes with its error, at this batch's step).
      actions += stepped()
      actions.append(.computed(micros: computed))
    }
    if !isLast && rule.handsOnAfterUpdate {
      actions.append(
        .send(.output(w.pass.activations, pass: w.pass, labels: w.input.labels, w.envelope)))
    }
    if let result, rule.sendsError { actions.append(.send(.error(result.gradient, w.envelope))) }
    if isLast { actions.append(.send(.result(w.envelope))) }
    let samples = w.input.labels.count
    if var owed {
      let kept = OwedBatch(
        pass: rule.step == .local ? nil : w.pass, output: w.pass.activations, labels: w.input.labels
      )
      trainTotals.feedback?.stale += owed.keep(kept, sequence: w.tag.sequence, step: w.step)
      self.owed = owed
      // A stage whose feedback comes back reports its loss (synthesiser's, DFA's surrogate)
      // then; a DNI hidden stage has trained on the batch already.
      if rule.step == .local { trainTotals.countBatch(samples: samples) }
    } else if let result {
      trainTotals.add(loss: result.loss, correct: result.correct, samples: samples)
    }
    replay?.add(w.input)
    let loss = owed == nil ? result?.loss : nil
    actions.append(
      .progress(
        Progress(busyMicros: computed, loss: loss, correct: result?.correct ?? 0, samples: samples))
    )
    return actions
  }

  /// One replay step: a buffer draw trains the stage again (nothing is sent on); when no
  /// entry can be drawn the stage stalls until fresh input arrives.
  mutating func replayOnce() -> [Action] {
    guard replay?.canDraw == true, let input = replay?.draw() else { return [] }
    let t0 = clock()
    let result = stage.trainLocal(input, learningRate: learningRate).1
    let (micros, t1) = since(t0)
    return [
      .span("replay", startMicros: t0, endMicros: t1),
      .progress(Progress(busyMicros: micros, loss: result.loss)),
    ]
  }

  // MARK: - End to end: a held forward and its backward

  /// A training micro-batch at an e2e stage before the last: forward, the pass kept until its
  /// gradient comes back, h sent on.
  mutating func forwardHolding(_ input: Stage.Input, _ tag: BatchTag, _ envelope: Envelope)
    -> [Action]
  {
    if !backprop.inBatch { backprop.microCount = tag.microCount }
    let t0 = clock()
    let pass = stage.forward(input)
    let (micros, t1) = since(t0)
    backprop.computeMicros += micros
    backprop.forwards += 1
    backprop.held[tag.sequence] = (pass, input.labels.count)
    return [
      .span("forward", startMicros: t0, endMicros: t1),
      .send(.output(pass.activations, pass: nil, labels: input.labels, envelope)),
    ]
  }

  /// The gradient of a held micro-batch's output: backward through its pass, the gradient at
  /// the input upstream; after the batch's last one, the one update.
  mutating func backwardHeld(_ gradient: Tensor, sequence: UInt64, _ envelope: Envelope) -> [Action]
  {
    guard let held = backprop.held.removeValue(forKey: sequence) else { return [] }
    let t0 = clock()
    let dx = stage.backward(
      held.pass, outputGradient: gradient, inputGradient: rule.returnsInputGradient)
    let (micros, t1) = since(t0)
    backprop.computeMicros += micros
    backprop.backwards += 1
    var actions: [Action] = [
      .span("backward", startMicros: t0, endMicros: t1),
      .progress(Progress(busyMicros: micros, samples: held.batch)),
    ]
    if let dx { actions.append(.send(.inputGradient(dx, envelope))) }
    guard backprop.backwards == backprop.microCount else { return actions }
    let t2 = clock()
    stage.optimizer.update(stage.store, learningRate: learningRate)
    let (updateMicros, t3) = since(t2)
    actions += [
      .span("update", startMicros: t2, endMicros: t3),
      .computed(micros: backprop.computeMicros + updateMicros),
    ]
    backprop = BackpropState()
    return actions + stepped()
  }

  // MARK: - Feedback: DFA's errors, DNI's targets

  /// Feedback for a batch this stage sent forward: DFA's update on its error, or DNI's
  /// synthesiser step on its target. Feedback for a batch given up on is dropped.
  mutating func takeFeedback(_ feedback: Tensor, sequence: UInt64) -> [Action] {
    guard var owed, let (held, staleness) = owed.take(sequence) else { return [] }
    self.owed = owed
    let learningRate = learningRate(atStep: held.step)
    let t0 = clock()
    let loss =
      rule.feedback == .error
      ? stage.trainOnError(held.entry.pass!, error: feedback, learningRate: learningRate)
      : stage.synthesiser!.train(held.entry.output, labels: held.entry.labels, target: feedback)
    let (micros, t1) = since(t0)
    let samples = held.entry.labels.count
    // A DFA hidden stage trains on the batch now; a DNI one did at forward time.
    if rule.feedback == .error { trainTotals.countBatch(samples: samples) }
    trainTotals.addLoss(loss, samples: samples)
    trainTotals.feedback?.applied(staleness: staleness)
    var actions: [Action] = [
      .span(
        rule.feedback == .error ? "error-update" : "synthesiser", startMicros: t0, endMicros: t1),
      .progress(Progress(busyMicros: micros, loss: loss)),
    ]
    if case .draining(let marker, let envelope, _) = state, owed.isEmpty {
      actions += passMarker(marker, envelope)
    }
    return actions
  }

  // MARK: - Evaluation and markers

  mutating func evaluate(_ input: Stage.Input, _ envelope: Envelope) -> [Action] {
    let t0 = clock()
    let (pass, logits) = stage.infer(input, scoringHead: config.scoresHead(ofStage: index))
    // No logits: a kernel hidden stage (no head) or an inner e2e stage (head never trained).
    let result = logits.map { softmaxCrossEntropy(logits: $0, labels: input.labels) }
    let (micros, t1) = since(t0)
    if let result {
      evalTotals.add(loss: result.loss, correct: result.correct, samples: input.labels.count)
    }
    return [
      .span("eval", startMicros: t0, endMicros: t1),
      .send(
        isLast
          ? .result(envelope)
          : .output(pass.activations, pass: pass, labels: input.labels, envelope)),
      .progress(Progress(busyMicros: micros)),
    ]
  }

  /// A marker closes a phase. One that saves first waits (bounded) for the feedback owed
  /// for the batches in front of it, so what is saved and evaluated has trained on them all.
  mutating func mark(_ marker: Marker, _ envelope: Envelope) -> [Action] {
    if marker.saves, let owed, !owed.isEmpty {
      state = .draining(marker, envelope, sinceMicros: clock())
      return []
    }
    return passMarker(marker, envelope)
  }

  /// The marker's work — with replicas, their mean first — then the marker on.
  mutating func passMarker(_ marker: Marker, _ envelope: Envelope) -> [Action] {
    var actions: [Action] = []
    if case .draining(_, _, let since) = state {
      actions.append(.span("feedback-wait", startMicros: since, endMicros: clock()))
      actions += abandonFeedback(why: "of the marker")
    }
    state = .training
    if marker.saves && replicas.place.count > 1 { return actions + beginRound(marker, envelope) }
    return actions + markerWork(marker, envelope)
  }

  /// A save, the phase's totals, the marker on.
  mutating func markerWork(_ marker: Marker, _ envelope: Envelope) -> [Action] {
    var actions: [Action] = []
    switch marker.kind {
    case .checkpoint:
      actions.append(.save(.step(epoch: marker.epoch, batchesDone: marker.batchesDone)))
    case .trainEnd:
      // The weights evaluated and checkpointed are the ones the epoch's batches trained.
      replay?.open = false
      replay?.buffer.removeAll()
      trainTotals.epoch = marker.epoch
      actions += [.save(.epoch(epochsDone: marker.epoch + 1)), .shipTrace, .report(trainTotals)]
      trainTotals = freshTotals(.train, epoch: marker.epoch + 1)
    case .evalEnd:
      evalTotals.epoch = marker.epoch
      actions.append(.report(evalTotals))
      evalTotals = freshTotals(.eval, epoch: marker.epoch + 1)
    }
    actions.append(.send(.marker(marker, envelope)))
    if marker.kind == .evalEnd { actions.append(.returnMemory) }
    return actions
  }
}
