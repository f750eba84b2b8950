"""FiLM's cost: training-step time of the proposed network over the plain Johnson network.

Goal (issue 2): ratio <= 1.05 on a CPU at 128x128, batch 8. Run: `make bench` or
`python bench/film_overhead.py --size 128 --batch 8`.
"""
import argparse

import torch

from filmmtl.models import build, count_parameters
from filmmtl.tasks import TaskSpace
from timing import interleaved_medians


def training_step(model, x, c):
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        optimiser.zero_grad(set_to_none=True)
        model(x, c).sub(x).square().mean().backward()
        optimiser.step()
    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, device=args.device)
    c = TaskSpace().vector("completion").expand(args.batch, -1).to(args.device)
    models = {name: build(name).to(args.device) for name in ("proposed", "johnson")}
    for name, model in models.items():
        print(f"{name:9s} parameters: {count_parameters(model):,}")
    medians = interleaved_medians({n: training_step(m, x, c) for n, m in models.items()}, args.repeats)
    for name, t in medians.items():
        print(f"{name:9s} training step: {t * 1000:8.1f} ms  ({args.batch / t:6.1f} images/s)")
    print(f"FiLM overhead ratio (proposed / johnson) on {args.device}, {args.size}x{args.size}, "
          f"batch {args.batch}: {medians['proposed'] / medians['johnson']:.3f}  (goal <= 1.05)")


if __name__ == "__main__":
    main()
