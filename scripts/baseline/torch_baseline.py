#!/usr/bin/env python3
"""PyTorch (CPU build) on Stagewise's reference models and recipe: the outside yardstick.

Runs the training loop only (data in memory, generated with a fixed seed), the same models,
batch sizes, SGD settings and thread counts as `stagewise bench kernels` / `bench pipeline`,
and prints one JSON object per measurement on stdout. A few seconds per measurement.

  python3 scripts/baseline/torch_baseline.py --model a-e2e --threads 1 --steps 30

Convolutions pad by 1 ("same"), as Stagewise's default. Models: a-e2e (784 → 4×1024 ReLU → 10, end to end), a-greedy (the same hidden layers in
--stages modules, each with its own linear head, inputs detached: DGL greedy in one process), b-e2e (conv 32 →
pool, conv 64, conv 64 → pool, conv 128 → global average pool → linear 10; NHWC input like
Stagewise's, converted to PyTorch's default NCHW). Exits 3 with one line when torch cannot be
imported, so callers can skip the column with a reason.
"""
import argparse
import json
import platform
import sys
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["a-e2e", "a-greedy", "b-e2e"], required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=0, help="0: 128 for model A, 64 for model B")
    p.add_argument("--steps", type=int, default=30, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--layers", type=int, default=4, help="model A hidden layers")
    p.add_argument("--stages", type=int, default=0, help="a-greedy: modules, each with a head (0: one per layer)")
    args = p.parse_args()
    try:
        import torch
        import torch.nn as nn
    except Exception as error:  # noqa: BLE001 - any import failure means "no yardstick here"
        print(f"torch_baseline: PyTorch is not importable ({error}); run scripts/baseline/setup.sh", file=sys.stderr)
        sys.exit(3)

    torch.manual_seed(1)
    torch.set_num_threads(args.threads)
    batch = args.batch_size or (64 if args.model == "b-e2e" else 128)
    w = args.width

    if args.model.startswith("a-"):
        x = torch.randn(batch, 784)
        layers = [nn.Sequential(nn.Linear(784 if i == 0 else w, w), nn.ReLU()) for i in range(args.layers)]
        stages = args.stages or args.layers
        if args.layers % stages:
            p.error("--layers must split evenly into --stages")
        per = args.layers // stages
        bodies = [nn.Sequential(*layers[i * per:(i + 1) * per]) for i in range(stages)]
        if args.model == "a-e2e":
            nets = [nn.Sequential(*bodies, nn.Linear(w, 10))]
        else:
            nets = [nn.ModuleDict({"body": b, "head": nn.Linear(w, 10)}) for b in bodies]
        lr, nesterov = 0.05, False
    else:
        x = torch.randn(batch, 28, 28, 1).permute(0, 3, 1, 2).contiguous()
        nets = [nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(128, 10))]
        lr, nesterov = 0.1, True
    y = torch.randint(0, 10, (batch,))
    optimizers = [torch.optim.SGD(n.parameters(), lr=lr, momentum=0.9, nesterov=nesterov, weight_decay=5e-4) for n in nets]
    loss_fn = nn.CrossEntropyLoss()

    def step():
        if args.model == "a-greedy":
            h = x
            for net, opt in zip(nets, optimizers):
                out = net["body"](h.detach())
                loss = loss_fn(net["head"](out), y)
                opt.zero_grad(set_to_none=False)
                loss.backward()
                opt.step()
                h = out
        else:
            opt = optimizers[0]
            loss = loss_fn(nets[0](x), y)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()

    for _ in range(5):
        step()
    rates = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        rates.append(batch * args.steps / (time.perf_counter() - start))
    rates.sort()
    print(json.dumps({
        "model": args.model, "threads": args.threads, "batchSize": batch,
        "samplesPerSecond": rates[len(rates) // 2],
        "torch": torch.__version__, "python": platform.python_version(),
        "mkldnn": torch.backends.mkldnn.is_available(),
    }))


if __name__ == "__main__":
    main()
