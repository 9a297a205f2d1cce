#!/usr/bin/env python3
"""Reference values for Tests/NNTests/OptimizerTests.swift.

Applies three steps of each optimizer (PyTorch's update rules, written out in numpy) to a
fixed three-element parameter with fixed gradients and prints the final weights. Runs in
well under a second; needs numpy.
"""
import numpy as np

w0 = np.array([0.5, -1.0, 2.0], dtype=np.float64)
grads = [np.array(g) for g in ([0.1, -0.2, 0.3], [0.05, 0.4, -0.1], [-0.3, 0.2, 0.25])]
lr = 0.1


def sgd(momentum=0.0, nesterov=False, wd=0.0):
    w, v = w0.copy(), np.zeros(3)
    for g in grads:
        d = g + wd * w
        if momentum:
            v = momentum * v + d
            d = d + momentum * v if nesterov else v
        w = w - lr * d
    return w


def adam(wd=0.0, decoupled=False, b1=0.9, b2=0.999, eps=1e-8):
    w, m, v = w0.copy(), np.zeros(3), np.zeros(3)
    for t, g in enumerate(grads, start=1):
        if not decoupled:
            g = g + wd * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        if decoupled:
            w = w - lr * wd * w
        w = w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return w


cases = {
    "sgd": sgd(),
    "sgdMomentum": sgd(momentum=0.9, wd=0.01),
    "sgdNesterov": sgd(momentum=0.9, nesterov=True, wd=0.01),
    "adam": adam(wd=0.01),
    "adamw": adam(wd=0.1, decoupled=True),
}
for name, w in cases.items():
    print(f"{name}: [{', '.join(f'{x:.8f}' for x in w)}]")
