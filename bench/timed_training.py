"""Train the proposed network (paper profile) for a fixed number of minutes, then score it.

Part of the GPU check (bench/gpu_check.sh): it measures steps per second at the paper's size and what a
few minutes of training reach. The learning rate follows the full run's cosine (``--steps``), so the
scores are those of a run cut short, not of a finished one. Scenes: 500 train / 100 test (generating
the paper's 8,498 would take longer than the training).
"""
import argparse
import json
import time
import warnings
from pathlib import Path

from filmmtl.evaluate import json_ready, quality_bars
from filmmtl.profiles import RECIPES
from filmmtl.train import Trainer, provenance


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=4)
    parser.add_argument("--steps", type=int, default=40000, help="the schedule's length (the paper profile's)")
    parser.add_argument("--out", default="results/gpu_check")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    trainer = Trainer(profile="paper", quiet=True, n_train=500, n_test=100, eval_every=0, steps=args.steps,
                      **RECIPES["proposed"])
    start = time.time()
    while time.time() - start < args.minutes * 60 and trainer.step_count < args.steps:
        trainer.fit(steps=min(trainer.step_count + 100, args.steps))
    seconds = time.time() - start
    scores = trainer.evaluate()
    report = {"device": str(trainer.device), "steps": trainer.step_count, "seconds": round(seconds, 1),
              "steps_per_second": round(trainer.step_count / seconds, 2), "config": trainer.config,
              "provenance": provenance(trainer), "quality_bars": quality_bars(scores), "scores": scores}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "timed_training.json").write_text(json.dumps(json_ready(report), indent=1, allow_nan=False))
    print(f"{trainer.step_count} steps in {seconds:.0f} s ({report['steps_per_second']} steps/s) on {trainer.device}")
    for bar in report["quality_bars"]:
        print(f"  {bar['job']:15s} {bar['bar']:55s} {bar['value']:8.3f}  {'holds' if bar['holds'] else 'missed'}")


if __name__ == "__main__":
    main()
