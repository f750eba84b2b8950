"""Where notebook 04's time goes: compared networks scored one after another in one process, as notebook 04
scores them (every task and mix, 3 degradation seeds for the intervals, FID on the styles), under
cProfile, summed by stage. The input's own scores are shared between networks (``evaluate.input_scores``),
so the first network costs more than the next ones: the table shows each.

Run: `python bench/evaluate_profile.py [--recipes proposed_compared single] [--n 200] [--fid 64]`. Prints
seconds per stage and their share of the whole; a stage is every call below one function named in STAGES
(the stages do not call each other, so none is counted twice; the rest is bookkeeping and metrics not named).
"""
import argparse
import cProfile
import json
import pstats
import time
from pathlib import Path

import torch

from filmmtl.evaluate import evaluate
from filmmtl.intervals import SEEDS
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


def profile_network(session, recipe, n, fid):
    """(seconds loading, seconds scoring, stage table) of one network."""
    start = time.perf_counter()
    model, config, provenance, _ = session.network(recipe)
    loading = time.perf_counter() - start
    space, test = TaskSpace(config["tasks"]), session.test_set(n)
    jobs = list(space) + (list(config["mixes"]) if getattr(model, "can_mix", True) else [])
    perceptual = session.perceptual(provenance["feature_net"])
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    scores = evaluate(model, space, test, jobs, perceptual, fid=fid, device=session.device, seeds=SEEDS)
    profiler.disable()
    return loading, time.perf_counter() - start, stage_seconds(pstats.Stats(profiler)), scores


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipes", nargs="+", default=["proposed_compared", "single"])
    parser.add_argument("--n", type=int, default=200, help="test images (notebook 04: 200)")
    parser.add_argument("--fid", type=int, default=64, help="FID sample count (notebook 04: 64)")
    parser.add_argument("--save", help="write every network's scores to this JSON file, to compare two versions")
    args = parser.parse_args()
    session = Session(profile="course")
    start = time.perf_counter()
    session.perceptual("vgg19-imagenet")
    print(f"building the perceptual network: {time.perf_counter() - start:.1f} s; {args.n} test images, "
          f"{SEEDS} seeds, FID on {args.fid}, {torch.get_num_threads()} threads")
    saved, total = {}, time.perf_counter()
    for recipe in args.recipes:
        loading, scoring, stages, saved[recipe] = profile_network(session, recipe, args.n, args.fid)
        print(f"\n{recipe}: loading {loading:.1f} s")
        print(f"{'stage':40s} {'seconds':>8s} {'share':>6s}")
        for label, seconds in stages:
            print(f"{label:40s} {seconds:8.1f} {seconds / scoring:6.0%}")
        print(f"{'scoring in all (evaluate with intervals)':40s} {scoring:8.1f} {1:6.0%}")
    print(f"\nall networks: {time.perf_counter() - total:.1f} s")
    if args.save:
        Path(args.save).write_text(json.dumps(saved, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
