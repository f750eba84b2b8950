"""Images per forward pass of the scoring networks on this machine: Inception (FID) and VGG (Gram distances)
timed at several batch sizes side by side in one run, with each size's largest difference from batch 32's
values (0 means the printed scores cannot change). ``metrics.scoring_batch`` is chosen from this.

Run: `python bench/scoring_batch.py [--n 64] [--sizes 4 8 16 32 64]` (a few seconds per size on 2 cores).
"""
import argparse
import time

import torch

from filmmtl import metrics
from filmmtl.losses import PerceptualLoss


def timed(score, images, sizes):
    """{size: (seconds, max |difference| from batch 32)} of score(images, size), each after one warm-up."""
    reference = score(images, 32)
    out = {}
    for size in sizes:
        score(images[:size], size)
        start = time.perf_counter()
        values = score(images, size)
        out[size] = (time.perf_counter() - start, float((values - reference).abs().max()))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=64, help="images (128 px, random)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    args = parser.parse_args()
    torch.manual_seed(0)
    images = torch.rand(args.n, 3, 128, 128)
    inception, vgg = metrics.InceptionFeatures(), PerceptualLoss("auto")
    networks = {"Inception (FID)": lambda x, b: metrics.inception_features(x, inception, b),
                f"VGG Gram distance ({vgg.net.name})": lambda x, b: torch.cat(
                    [vgg.gram_distance(chunk, "gogh") for chunk in x.split(b)])}
    print(f"{args.n} images of 128 px, {torch.get_num_threads()} threads; ratio: seconds / seconds at batch 32")
    with torch.no_grad():
        for name, score in networks.items():
            rows = timed(score, images, args.sizes)
            base = rows.get(32, next(iter(rows.values())))[0]
            for size, (seconds, difference) in rows.items():
                print(f"{name:34s} batch {size:3d}: {seconds:6.2f} s  ratio {seconds / base:4.2f}  "
                      f"max difference {difference:.1e}")


if __name__ == "__main__":
    main()
