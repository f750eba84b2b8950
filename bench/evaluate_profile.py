"""Where notebook 04's time goes: one compared network scored as notebook 04 scores it (every task and mix,
3 degradation seeds for the intervals, FID on the styles), under cProfile, summed by stage.

Run: `python bench/evaluate_profile.py [--recipe proposed_compared] [--n 200] [--fid 64]`. Prints seconds
per stage and their share of the whole; a stage is every call below one function named in STAGES (the
stages do not call each other, so none is counted twice; the rest is bookkeeping and metrics not named).
"""
import argparse
import cProfile
import pstats
import time

import torch

from filmmtl.evaluate import evaluate
from filmmtl.intervals import SEEDS, metric_intervals, seeded_values
from filmmtl.session import Session
from filmmtl.tasks import TaskSpace

# (label, module file, function): the stages issue 30 asks about; none calls another.
STAGES = [("network inference (evaluate.run)", "evaluate.py", "run"),
          ("perceptual network: Gram distances", "losses.py", "gram_distance"),
          ("SSIM", "metrics.py", "ssim"), ("edge correlation (Sobel)", "metrics.py", "edge_correlation"),
          ("FID: Inception and statistics", "evaluate.py", "fid_to_style"),
          ("bootstrap intervals", "intervals.py", "bootstrap"), ("degraded inputs", "evaluate.py", "job_inputs")]


def stage_seconds(stats):
    """Cumulative seconds of each stage's function, largest first."""
    totals = {}
    for (file, _, name), (_, _, _, cumulative, _) in stats.stats.items():
        for label, module, function in STAGES:
            if name == function and file.endswith(f"filmmtl/{module}"):
                totals[label] = totals.get(label, 0.0) + cumulative
    return sorted(totals.items(), key=lambda item: -item[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipe", default="proposed_compared")
    parser.add_argument("--n", type=int, default=200, help="test images (notebook 04: 200)")
    parser.add_argument("--fid", type=int, default=64, help="FID sample count (notebook 04: 64)")
    args = parser.parse_args()
    session = Session(profile="course")
    start = time.perf_counter()
    model, config, provenance, _ = session.network(args.recipe)
    loading = time.perf_counter() - start
    space, test = TaskSpace(config["tasks"]), session.test_set(args.n)
    jobs = list(space) + list(config["mixes"])
    start = time.perf_counter()
    perceptual = session.perceptual(provenance["feature_net"])
    building = time.perf_counter() - start
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    with torch.no_grad():
        evaluate(model, space, test, jobs, perceptual, fid=args.fid, device=session.device)
        metric_intervals(seeded_values(model, space, test, jobs, perceptual, SEEDS)[0])
    profiler.disable()
    scoring = time.perf_counter() - start
    print(f"{args.recipe}, {len(test)} test images, {len(jobs)} jobs, {SEEDS} seeds, FID on {args.fid}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'stage':40s} {'seconds':>8s} {'share':>6s}")
    print(f"{'loading the network':40s} {loading:8.1f}")
    print(f"{'building the perceptual network':40s} {building:8.1f}")
    for label, seconds in stage_seconds(pstats.Stats(profiler)):
        print(f"{label:40s} {seconds:8.1f} {seconds / scoring:6.0%}")
    print(f"{'scoring in all (evaluate + intervals)':40s} {scoring:8.1f} {1:6.0%}")


if __name__ == "__main__":
    main()
