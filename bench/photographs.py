"""A network on real photographs, as a new user would try it: centre crops of scikit-image's astronaut,
coffee, chelsea and rocket at 128 px (the network runs at any size), reconstruction and restoration.

Run: `.venv/bin/python bench/photographs.py [--checkpoint data/checkpoints/proposed.pt] [--size 128]`.
Bars (issue 12): reconstruction >= 28 dB and restoration gain >= +3 dB on each photograph. The noise is
the restoration task's (sigma 0.1), drawn with a fixed seed.
"""
import argparse

import torch
from skimage import data as skdata

from filmmtl.evaluate import job_inputs, run
from filmmtl.metrics import psnr
from filmmtl.tasks import TaskSpace
from filmmtl.train import load_model

PHOTOGRAPHS = ("astronaut", "coffee", "chelsea", "rocket")
BARS = {"reconstruction PSNR (dB)": 28.0, "restoration gain (dB)": 3.0}


def centre_crop(name, size):
    image = torch.from_numpy(getattr(skdata, name)()[..., :3].copy()).permute(2, 0, 1).float() / 255
    side = min(image.shape[1:])
    top, left = (image.shape[1] - side) // 2, (image.shape[2] - side) // 2
    square = image[:, top:top + side, left:left + side][None]
    return torch.nn.functional.interpolate(square, size=(size, size), mode="area")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="data/checkpoints/proposed.pt")
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    model, cfg, _ = load_model(args.checkpoint)
    space = TaskSpace(cfg["tasks"])
    images = torch.cat([centre_crop(name, args.size) for name in PHOTOGRAPHS])
    rebuilt = run(model, space.vector("reconstruction"), images)
    noisy, _ = job_inputs("restoration", images)
    restored = run(model, space.vector("restoration"), noisy)
    rows = {"reconstruction PSNR (dB)": psnr(rebuilt, images),
            "restoration gain (dB)": psnr(restored, images) - psnr(noisy, images)}
    print(f"{args.checkpoint} on photographs at {args.size} px (bars: " +
          ", ".join(f"{k} >= {v:g}" for k, v in BARS.items()) + ")")
    print(f"{'':26s}" + "".join(f"{name:>11s}" for name in PHOTOGRAPHS) + "   all hold")
    for what, values in rows.items():
        holds = bool((values >= BARS[what]).all())
        print(f"{what:26s}" + "".join(f"{float(v):11.2f}" for v in values) + f"   {holds}")


if __name__ == "__main__":
    main()
