"""A network on real photographs that no training scene is cut from (``filmmtl.data.PHOTOGRAPHS``: Grace
Hopper from matplotlib's sample data, scikit-image's motorcycle, retina and page), at 128 px: reconstruction,
restoration, and how much of each photograph the two styles keep (edge correlation) and take of the painting
(Gram ratio). Saves a picture of the styles on the photographs.

Run: `.venv/bin/python bench/photographs.py [--checkpoint data/checkpoints/proposed.pt] [--size 128]
[--out results/photographs.png]`. Bars (issue 27): reconstruction >= 30 dB and restoration gain >= +3 dB on
each photograph. The noise is the restoration task's (sigma 0.1), drawn with a fixed seed.
"""
import argparse

import torch

from filmmtl.data import PHOTOGRAPHS, load_photograph
from filmmtl.evaluate import PHOTOGRAPH_BARS, photograph_scores, run
from filmmtl.losses import PerceptualLoss
from filmmtl.tasks import TASKS, TaskSpace
from filmmtl.train import load_model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="data/checkpoints/proposed.pt")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", help="save the styles on the photographs here (.png)")
    args = parser.parse_args()
    model, cfg, _ = load_model(args.checkpoint)
    space = TaskSpace(cfg["tasks"])
    perceptual = PerceptualLoss(cfg["feature_net"]) if any(TASKS[k].style for k in space) else None
    rows = photograph_scores(model, space, perceptual, args.size)
    print(f"{args.checkpoint} on photographs at {args.size} px (bars: " +
          ", ".join(f"{k} >= {v:g}" for k, (v, _) in PHOTOGRAPH_BARS.items()) + ")")
    print(f"{'':30s}" + "".join(f"{name:>13s}" for name in PHOTOGRAPHS) + "   all hold")
    for what, values in rows.items():
        bar = PHOTOGRAPH_BARS.get(what)
        holds = "" if bar is None else str(all(v >= bar[0] for v in values.values()))
        print(f"{what:30s}" + "".join(f"{v:13.3f}" for v in values.values()) + f"   {holds}")
    if args.out:
        save_picture(model, space, args.size, args.out)


def save_picture(model, space, size, path):
    import matplotlib
    matplotlib.use("Agg")
    from filmmtl.plots import image_grid
    images = torch.stack([load_photograph(name, size) for name in PHOTOGRAPHS])
    styles = [job for job in space.keys if TASKS[job].style]
    rows = [images] + [run(model, space.vector(job), images) for job in styles]
    image_grid(rows, ["photograph"] + styles, list(PHOTOGRAPHS), scale=2.2).savefig(path, dpi=100)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
