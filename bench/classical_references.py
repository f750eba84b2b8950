"""How far classical, untrained methods get on restoration and completion: what the quality bars mean.

Run: `.venv/bin/python bench/classical_references.py [--profile course] [--n 200]`. It scores the same
degraded test inputs that `python -m filmmtl evaluate` scores (same seeds), so its gains sit beside a
network's: restoration by Gaussian blur and total-variation denoising (scikit-image), completion by the
visible pixels' mean colour and biharmonic inpainting (scikit-image).
"""
import argparse

import numpy as np
import torch
from skimage.restoration import denoise_tv_chambolle, inpaint_biharmonic
from torchvision.transforms.functional import gaussian_blur

from filmmtl.data import load_dataset
from filmmtl.evaluate import job_inputs
from filmmtl.metrics import psnr
from filmmtl.profiles import make_config


def per_image(function, images, *extra):
    """Apply a numpy (H, W, C) function to each image of a (B, C, H, W) batch."""
    out = [function(x.permute(1, 2, 0).numpy(), *(e[i] for e in extra)) for i, x in enumerate(images)]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().clamp(0, 1)


def completion_references(images, holed, hole):
    """Untrained fills of the hole: the visible pixels' mean colour and biharmonic inpainting."""
    visible = (~hole).float()
    mean_colour = (images * visible).sum((2, 3), keepdim=True) / visible.sum((2, 3), keepdim=True)
    return {"mean colour of the visible pixels": torch.where(hole, mean_colour, images),
            "biharmonic inpainting": per_image(lambda x, h: inpaint_biharmonic(x, h, channel_axis=-1),
                                               holed, hole[:, 0].numpy())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="course")
    parser.add_argument("--n", type=int, help="test images (the profile's n_test by default)")
    args = parser.parse_args()
    cfg = make_config(args.profile)
    test = load_dataset(cfg["data"], "test", cfg["size"], args.n or cfg["n_test"], cfg["data_root"], cfg["data_seed"])
    images, _ = test.batch(torch.arange(len(test)))
    print(f"{len(test)} test images, {cfg['size']}x{cfg['size']}, {test.source}")

    noisy, _ = job_inputs("restoration", images)
    start = psnr(noisy, images).mean().item()
    candidates = {f"Gaussian blur sigma {s}": gaussian_blur(noisy, [5, 5], [s, s]) for s in (0.5, 0.7, 1.0)}
    candidates["total variation (Chambolle, weight 0.05)"] = per_image(
        lambda x: denoise_tv_chambolle(x, weight=0.05, channel_axis=-1), noisy)
    print(f"\nrestoration: noisy input {start:.2f} dB; bar: gain >= 5 dB")
    for name, out in candidates.items():
        value = psnr(out, images).mean().item()
        print(f"  {name:42s} {value:6.2f} dB  gain {value - start:+.2f}")

    holed, hole = job_inputs("completion", images)
    start = psnr(holed, images, hole).mean().item()
    candidates = completion_references(images, holed, hole)
    print(f"\ncompletion (inside the hole): grey input {start:.2f} dB; bar: gain >= 3 dB")
    for name, out in candidates.items():
        value = psnr(out, images, hole).mean().item()
        print(f"  {name:42s} {value:6.2f} dB  gain {value - start:+.2f}")


if __name__ == "__main__":
    main()
