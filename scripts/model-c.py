#!/usr/bin/env python3
"""Writes model C's configs, config/resnet-c-k{2,4,8,16}.yaml: one residual CNN for
Fashion-MNIST, 16 units (a stem and 15 residual blocks: WIDTH channels at 28×28, 2×WIDTH at
14×14, 4×WIDTH at 7×7), cut into K stages of 16/K consecutive units each — the split is the
only difference between the files. Every stage has an mlp-sr head (DGL's head for maps) with
BatchNorm before its hidden ReLUs, as DGL's heads have (without it a head can collapse to a
constant and starve its stage).
Usage: scripts/model-c.py [WIDTH]   (default 8)"""
import sys

width = int(sys.argv[1]) if len(sys.argv) > 1 else 8

def conv(out, stride=1):
    return "{type: conv, out: %d%s}" % (out, ", stride: 2" if stride == 2 else "")

def block(out, stride=1):
    inner = ", ".join([conv(out, stride), "{type: batchnorm}", "{type: relu}", conv(out), "{type: batchnorm}"])
    return ["{type: residual, layers: [%s]}" % inner, "{type: relu}"]

units = [[conv(width), "{type: batchnorm}", "{type: relu}"]]
for stage_width, blocks in [(width, 5), (2 * width, 5), (4 * width, 5)]:
    for b in range(blocks):
        downsample = b == 0 and stage_width != width
        units.append(block(stage_width, 2 if downsample else 1))
assert len(units) == 16

for k in (2, 4, 8, 16):
    per = 16 // k
    lines = [
        f"# Model C (scripts/model-c.py {width}): a residual CNN of 16 units — a stem conv3×3 {width} + BN + ReLU, then",
        f"# 15 residual blocks [conv3×3, BN, ReLU, conv3×3, BN] + x (a strided 1×1 conv where the shape",
        f"# changes) + ReLU: 5 at {width} channels on 28×28, 5 at {2 * width} on 14×14, 5 at {4 * width} on 7×7 —",
        f"# cut into K = {k} stages of {per} unit(s) each, every stage with an mlp-sr head (BatchNorm'd). Greedy (DGL),",
        "# pipelined; SGD with momentum, cosine schedule; random crops (padding 2) and flips.",
        f"name: resnet-c-k{k}",
        "seed: 1",
        "method: greedy",
        "schedule: pipelined",
        "data:",
        "  source: fashion-mnist",
        "  path: /usr/share/datasets/fashion-mnist",
        "  augment: {padding: 2, flip: true}",
        "training:",
        "  epochs: 5",
        "  batchSize: 128",
        "  threads: 1",
        "optimizer:",
        "  kind: sgd",
        "  learningRate: 0.05",
        "  momentum: 0.9",
        "  weightDecay: 0.0005",
        "learningRateSchedule:",
        "  kind: cosine",
        "stages:",
    ]
    for s in range(k):
        layers = [layer for unit in units[s * per:(s + 1) * per] for layer in unit]
        lines.append("  - layers:")
        lines += [f"      - {layer}" for layer in layers]
        lines.append("    head: {type: mlp-sr, hidden: 128, batchnorm: true}")
    with open(f"config/resnet-c-k{k}.yaml", "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote config/resnet-c-k{k}.yaml")
