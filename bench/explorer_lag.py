"""The explorer's lag budget: how long one slider move takes to give a new output (course profile, the
shipped network, this machine's CPU), against the one second a student will wait.

    python bench/explorer_lag.py [--moves 20]
"""
import argparse
import statistics
import time

import torch

from filmmtl.explorer import Explorer
from filmmtl.session import Session
from filmmtl.tasks import TaskSpace

BUDGET_SECONDS = 1.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moves", type=int, default=20)
    args = parser.parse_args()
    session = Session(profile="course")
    model, config, _, _ = session.network("proposed")
    images, _ = session.test_set().batch(torch.arange(8))
    explorer = Explorer(model, TaskSpace(config["tasks"]), images, mixes=config["mixes"])
    sliders = list(explorer.sliders.values())
    whole, network = [], []
    for k in range(args.moves):
        start = time.perf_counter()
        sliders[k % len(sliders)].value = (k // len(sliders) % 4 + 1) / 5  # a new value: network, PNGs, FiLM map
        whole.append(time.perf_counter() - start)
        network.append(explorer.seconds)
    print(f"{torch.get_num_threads()} threads, {config['size']} px, width {config['width']}, {args.moves} moves")
    print(f"median per move: {1000 * statistics.median(whole):.0f} ms in all, of which the network "
          f"{1000 * statistics.median(network):.0f} ms; {statistics.median(whole) / BUDGET_SECONDS:.3f} of the "
          f"{BUDGET_SECONDS:g} s budget (max {max(whole) / BUDGET_SECONDS:.3f})")


if __name__ == "__main__":
    main()
