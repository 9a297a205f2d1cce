import NN

// Adding a method: a case here, its `rule` (when its stages step, what they send back), its
// `objective`, and that objective's loss in `Stage.localStep` (Stage.swift). The stage
// machine, the trainer and the worker read nothing else of it (ARCHITECTURE.md).

/// How stages learn.
public enum Method: String, Sendable, Codable, CaseIterable {
  /// End-to-end backprop through every stage: the baseline.
  case e2e
  /// Each stage trains on its own auxiliary head's cross-entropy (DGL), gradient-isolated.
  case greedy
  /// Synergistic Information Distillation: each head refines the previous stage's belief,
  /// α·CE + (1 − α)·KL(previous belief ‖ own belief); the belief travels forward.
  case sid
  /// Context supply (ContSup): stage k's input is sg(h_{k−1}) + Enc_k(context), the context
  /// (raw input and/or the previous stage's input) travelling forward; loss as greedy.
  case contsup
  /// Duan & Principe: hidden stages align their normalised features' Gram matrix with the
  /// label kernel; the last stage trains a classifier with CE on what they output.
  case kernel
  /// Direct random target projection (Frenkel et al.): every hidden layer trains on its own
  /// fixed random projection of the one-hot label — no head, no error from above, no message
  /// back; the last stage trains its classifier with CE.
  case drtp
  /// Direct feedback alignment (Nøkland): the last stage trains with CE and sends its output
  /// error e = (softmax − onehot(y))/B (B the batch size) to every earlier stage; each hidden layer
  /// there trains on
  /// its own fixed random projection B e, applied when the error arrives (the forward path
  /// never waits for it).
  case dfa
  /// Decoupled neural interfaces (Jaderberg et al.): each stage but the last owns a
  /// synthesiser M that predicts ∂L/∂h from its output h and updates at once with it; the next
  /// stage returns the gradient of its own objective at its input, on which M regresses when
  /// it arrives. The last stage trains with CE.
  case dni
  /// DNI with the synthesiser also reading the one-hot label (cDNI).
  case cdni
}

extension Method {
  /// When this method's stages step and what they send back: the one declaration a method
  /// makes about its messages (its objective is the stage's `Objective`).
  public func rule(isLast: Bool) -> StageRule {
    switch (self, isLast) {
    case (.greedy, _), (.sid, _), (.contsup, _), (.kernel, _), (.drtp, _): StageRule(step: .local)
    case (.e2e, false): StageRule(step: .onGradient, returnsInputGradient: true)
    case (.e2e, true): StageRule(step: .local, returnsInputGradient: true)
    case (.dfa, false): StageRule(step: .onError)
    case (.dfa, true): StageRule(step: .local, sendsError: true)
    case (.dni, false), (.cdni, false):
      StageRule(step: .local, returnsInputGradient: true, awaitsTarget: true)
    case (.dni, true), (.cdni, true): StageRule(step: .local, returnsInputGradient: true)
    }
  }

  /// Whether later stages send something back to earlier ones (DFA's errors, DNI's gradient
  /// targets): their workers then have feedback to receive and a bounded store to keep.
  public var hasFeedback: Bool { [.error, .target].contains(rule(isLast: false).feedback) }

  /// Whether each stage after the first returns the gradient at its input to the one before
  /// (e2e's true gradient; DNI's target for the synthesiser).
  public var returnsInputGradients: Bool { rule(isLast: true).returnsInputGradient }

  /// Whether anything travels back against the data (gradients, errors, targets).
  public var sendsBack: Bool { rule(isLast: false).feedback != nil || returnsInputGradients }

  /// Whether a stage may run on replicas: its stages learn on their own, or hear back only
  /// from the next stage about one batch at a time (DNI's targets go to the replica that sent
  /// it). e2e and GPipe hold a batch for the whole backward pass and DFA's errors come from the
  /// last stage, which does not know which replica of an earlier stage had the batch.
  public var routesWithReplicas: Bool { !sendsBack || (!splitsBatches && !sendsErrors) }

  /// Whether a batch is split into `daemon.microBatches` (GPipe): for methods whose stages step
  /// on the gradient that comes back, so that the pipeline fills while they wait.
  public var splitsBatches: Bool { rule(isLast: false).step == .onGradient }

  /// Whether the last stage sends its output error to every earlier stage (DFA).
  public var sendsErrors: Bool { rule(isLast: true).sendsError }

  /// What a stage of this method minimises: the declaration of its local objective (the loss
  /// itself is `Stage.Objective`'s, in `Stage.localStep`).
  public func objective(isLast: Bool, sid: SIDConfig) -> Stage.Objective {
    switch (self, isLast) {
    case (.kernel, false): .kernel
    case (.drtp, false): .drtp
    case (.dfa, false): .dfa
    case (.dni, false), (.cdni, false): .synthetic
    case (.sid, _): .sid(sid)
    default: .crossEntropy
    }
  }
}
