"""Where a network loses on the two near-identity tasks, restoration and completion.

Run: `.venv/bin/python bench/near_identity.py [--checkpoint data/checkpoints/proposed.pt] [--n 200]`.
Same test images and degraded inputs as `python -m filmmtl evaluate` (same seeds).

- Restoration's slider (bar: the c=1 output at least half the noise's energy, MSE, from the c=0 output)
  is limited by both ends. c=1 is bounded by how well it denoises; c=0 should be the identity, but a
  network trained on clean images only may already smooth a noisy input. For an ideal denoiser with an
  exact identity at c=0 the share would be 1 - 10^(-gain/10) (an MMSE estimate's error is orthogonal
  to its correction, so its distance to the noisy input is the noise's energy minus its own error),
  printed beside the measured one.
- Completion's error by distance to the hole's border (and on the visible ring around it, where a
  correction that cannot stop sharply at the border spills), beside biharmonic inpainting (scikit-image)
  and the visible pixels' mean colour: where the network is worse than a classical method.
"""
import argparse

import numpy as np
import torch
from classical_references import completion_references
from scipy.ndimage import distance_transform_edt

from filmmtl.data import load_dataset
from filmmtl.evaluate import job_inputs, run
from filmmtl.metrics import psnr
from filmmtl.tasks import TaskSpace
from filmmtl.train import load_model

# Signed distance to the hole's border, in pixels (inside: to the nearest visible pixel; outside, negative:
# to the nearest hole pixel): (low, high] bands. The first is the visible ring next to the hole.
BANDS = ((-3, -1), (0, 2), (2, 4), (4, 8), (8, 1e9))


def energy(a, b):
    return float((a - b).square().mean())


def restoration_anatomy(model, space, images):
    noisy, _ = job_inputs("restoration", images)
    noise = energy(noisy, images)
    identity = run(model, space.vector("restoration", 0.0), noisy)
    restored = run(model, space.vector("restoration"), noisy)
    gain = (psnr(restored, images).mean() - psnr(noisy, images).mean()).item()
    print(f"restoration (noise energy N = {noise:.5f}; gain {gain:+.2f} dB)")
    print(f"  c=0 output: MSE to the clean image / N = {energy(identity, images) / noise:.3f} "
          f"(1 = leaves the noise), to the noisy input / N = {energy(identity, noisy) / noise:.3f} (0 = identity)")
    print(f"  c=1 output: MSE to the noisy input / N = {energy(restored, noisy) / noise:.3f}")
    print(f"  slider share MSE(c=1, c=0) / N = {energy(restored, identity) / noise:.3f} (bar 0.5); "
          f"with an exact identity at c=0 and this gain: about {1 - 10 ** (-gain / 10):.2f}")


def completion_by_distance(model, space, images):
    holed, hole = job_inputs("completion", images)
    filled = run(model, space.vector("completion"), holed)
    references = completion_references(images, holed, hole)
    outputs = {"grey input": holed, "network": filled, "mean colour": references["mean colour of the visible pixels"],
               "biharmonic": references["biharmonic inpainting"]}
    holes = hole[:, 0].numpy()
    distance = torch.from_numpy(np.stack([np.where(h, distance_transform_edt(h), -distance_transform_edt(~h))
                                          for h in holes]))[:, None]
    print("\ncompletion: MSE by signed distance to the hole's border (pixels; negative: the visible ring around "
          "it), pooled hole PSNR gain,\nand in the hole's first pixel ring the share of the step from the grey fill "
          "to the answer that the output makes (1: all of it)")
    print(f"  {'':12s}" + "".join(f"{f'({lo:g}, {hi:g}]' if hi < 1e9 else f'> {lo:g}':>12s}" for lo, hi in BANDS)
          + f"{'gain dB':>10s}{'ring step':>11s}")
    start = psnr(holed, images, hole).mean().item()
    ring = ((distance > 0) & (distance <= 1)).expand_as(images)
    for name, out in outputs.items():
        error = (out - images).square().mean(1, keepdim=True)
        cells = [error[(distance > lo) & (distance <= hi)].mean().item() for lo, hi in BANDS]
        gain = psnr(out, images, hole).mean().item() - start
        step, made = images[ring] - holed[ring], out[ring] - holed[ring]
        share = float((made * step).sum() / step.square().sum())
        print(f"  {name:12s}" + "".join(f"{c:12.4f}" for c in cells) + f"{gain:+10.2f}{share:11.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="data/checkpoints/proposed.pt")
    parser.add_argument("--n", type=int, help="test images (the network's profile's n_test by default)")
    args = parser.parse_args()
    model, cfg, _ = load_model(args.checkpoint)
    space = TaskSpace(cfg["tasks"])
    test = load_dataset(cfg["data"], "test", cfg["size"], args.n or cfg["n_test"], cfg["data_root"], cfg["data_seed"])
    images, _ = test.batch(torch.arange(len(test)))
    print(f"{args.checkpoint}: {len(test)} test images, {cfg['size']}x{cfg['size']}, {test.source}\n")
    restoration_anatomy(model, space, images)
    completion_by_distance(model, space, images)


if __name__ == "__main__":
    main()
