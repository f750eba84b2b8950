"""Throughput side by side: scene generation vs training images/s, L2 vs perceptual steps, peak memory,
and the speed settings (channels_last, bf16 autocast, threads, torch.compile) against eager fp32.

Run: `.venv/bin/python bench/throughput.py [--profiles course paper] [--repeats 5] [--settings]
[--setting-jobs restoration style_gogh]`. Every
ratio is measured in this one run, candidates interleaved (see timing.py), so machine noise hits them alike.
"""
import argparse
import resource
import time
import warnings

import torch

from filmmtl.data import make_scene
from filmmtl.train import Trainer, provenance
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


def speed_settings(profile, repeats, compile_too, job="restoration"):
    """Training-step time of each setting over eager fp32 on one job's step (restoration: the network's own
    cost; a style job adds the perceptual network, whose speed under bf16 differs by CPU)."""
    settings = {"eager fp32": {}, "channels_last": dict(channels_last=True),
                "bf16 autocast": dict(amp=True), "bf16 autocast + channels_last": dict(amp=True, channels_last=True)}
    trainers = {name: Trainer(profile=profile, quiet=True, n_train=64, n_test=8, eval_every=0,
                              **{"amp": False, "channels_last": False, **extra}) for name, extra in settings.items()}
    if compile_too:
        trainers["torch.compile"] = Trainer(profile=profile, quiet=True, n_train=64, n_test=8, eval_every=0,
                                            amp=False, channels_last=False)
        trainers["torch.compile"].network = torch.compile(trainers["torch.compile"].model)
    steps = {name: job_step(t, job) for name, t in trainers.items()}
    threads = torch.get_num_threads()
    if threads > 1:
        one = job_step(trainers["eager fp32"], job)

        def one_thread():
            torch.set_num_threads(1)
            try:
                one()
            finally:
                torch.set_num_threads(threads)
        steps["eager fp32, 1 thread"] = one_thread
    medians = interleaved_medians(steps, repeats, warmup=2)
    base = medians["eager fp32"]
    print(f"\n{profile}: speed settings, {job} step time / eager fp32 ({threads} threads, device "
          f"{trainers['eager fp32'].device}; < 1 is faster)")
    for name, seconds in medians.items():
        print(f"  {name:32s} {seconds * 1000:8.1f} ms/step   ratio {seconds / base:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profiles", nargs="+", default=["course", "paper"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--settings", action="store_true", help="also time the speed settings against eager fp32")
    parser.add_argument("--compile", action="store_true", help="include torch.compile in --settings (slow to build)")
    parser.add_argument("--setting-jobs", nargs="+", default=["restoration"],
                        help="the jobs whose step --settings times (e.g. restoration style_gogh)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    for profile in args.profiles:
        if args.settings:
            for job in args.setting_jobs:
                speed_settings(profile, args.repeats, args.compile, job)
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
              f"device {trainer.device}, feature net {provenance(trainer)['feature_net']}")
        print(f"  scene generation        {generated:8.1f} images/s (one process)")
        for name, seconds in medians.items():
            print(f"  training, {name:26s} {batch / seconds:8.1f} images/s  ({seconds * 1000:7.1f} ms/step)")
        l2 = medians["l2 (restoration)"]
        print(f"  perceptual / L2 step time ratio: {medians['perceptual (style_gogh)'] / l2:.2f}")
        print(f"  generation / L2 training images/s: {generated / (batch / l2):.2f} (> 1: data is not the bottleneck)")
        print(f"  peak memory so far: {peak_memory_mb(trainer.device):.0f} MB")


if __name__ == "__main__":
    main()
