"""Command line: ``python -m filmmtl {demo} ...`` (``--help`` on each)."""
import argparse
import sys
from pathlib import Path


def demo(args):
    """Build the paper's network, run every task vector through it, save a picture."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from skimage import data as skdata

    from filmmtl.models import build, count_parameters

    torch.manual_seed(args.seed)
    model = build("proposed").eval()
    image = torch.from_numpy(skdata.astronaut()[::4, ::4].copy()).permute(2, 0, 1).float().div(255)
    vectors = torch.cat([torch.zeros(1, 6), torch.eye(6)[1:]])
    with torch.no_grad():
        out = model(image.expand(6, -1, -1, -1), vectors).clamp(0, 1)
    fig, axes = plt.subplots(1, 6, figsize=(15, 3))
    for ax, img, c in zip(axes, out, vectors):
        ax.imshow(img.permute(1, 2, 0).numpy())
        ax.set_title(f"c = {c.int().tolist()}", fontsize=7)
        ax.axis("off")
    fig.suptitle(f"untrained proposed network ({count_parameters(model):,} parameters): every task vector")
    out_path = Path(args.out) / "demo.png"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=80, bbox_inches="tight")
    print(f"saved {out_path}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m filmmtl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help=demo.__doc__)
    p.add_argument("--out", default="results", help="folder for the picture")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=demo)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
