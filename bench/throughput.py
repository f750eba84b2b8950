"""Throughput side by side: scene generation vs training images/s, L2 vs perceptual steps, peak memory.

Run: `.venv/bin/python bench/throughput.py [--profiles course paper] [--repeats 5]`. Every ratio is
measured in this one run, candidates interleaved (see timing.py), so machine noise hits them alike.
"""
import argparse
import resource
import time
import warnings

import torch

from filmmtl.data import make_scene
from filmmtl.train import Trainer
from timing import interleaved_medians


def peak_memory_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


def job_step(trainer, job):
    def step():
        trainer.jobs, trainer.job_weights = [job], torch.ones(1)
        trainer.step()
    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profiles", nargs="+", default=["course", "paper"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    for profile in args.profiles:
        trainer = Trainer(profile=profile, quiet=True, n_train=64, n_test=8, eval_every=0)
        cfg, batch = trainer.config, trainer.config["batch_size"]
        start = time.perf_counter()
        scenes = 32
        for i in range(scenes):
            make_scene(i, cfg["size"], "train", seed=99)
        generated = scenes / (time.perf_counter() - start)
        steps = {"l2 (restoration)": job_step(trainer, "restoration"),
                 "adversarial (segmentation)": job_step(trainer, "segmentation"),
                 "perceptual (style_gogh)": job_step(trainer, "style_gogh")}
        medians = interleaved_medians(steps, args.repeats, warmup=1)
        print(f"\n{profile}: {cfg['size']}x{cfg['size']}, width {cfg['width']}, batch {batch}, "
              f"device {trainer.device}, feature net {trainer.provenance()['feature_net']}")
        print(f"  scene generation        {generated:8.1f} images/s (one process)")
        for name, seconds in medians.items():
            print(f"  training, {name:26s} {batch / seconds:8.1f} images/s  ({seconds * 1000:7.1f} ms/step)")
        l2 = medians["l2 (restoration)"]
        print(f"  perceptual / L2 step time ratio: {medians['perceptual (style_gogh)'] / l2:.2f}")
        print(f"  generation / L2 training images/s: {generated / (batch / l2):.2f} (> 1: data is not the bottleneck)")
        print(f"  peak memory so far: {peak_memory_mb(trainer.device):.0f} MB")


if __name__ == "__main__":
    main()
