"""How much of the scene a style keeps against how much of the painting it takes: the content/style trade-off.

Each ``content_scale`` (times the feature network's default content weight; 1 = the shipped network's loss)
fine-tunes the shipped network on the two style tasks alone for ``--steps`` steps, then scores both styles
on the validation split: the edge correlation with the input (scene kept, higher is better) and the Gram
distance over the input's (painting taken, lower is better). A cheap proxy for training from scratch at each
weight: it picks the weight that the course recipe then trains with. Every number is on validation images.

Run: `.venv/bin/python bench/content_sweep.py --scales 1 4 16 64 --out docs/content_sweep`
(about 3 min a scale on 2 cores at 300 steps). Writes content_sweep.json, a figure and a picture grid.
"""
import argparse
import json
import time
from pathlib import Path

import torch

from filmmtl.data import load_dataset
from filmmtl.evaluate import evaluate, run
from filmmtl.train import Trainer, load_model

STYLES = ("style_gogh", "style_munch")


def fine_tune(checkpoint, scale, steps, lr, seed):
    """The shipped network fine-tuned on the styles at ``content_scale=scale``; returns the Trainer."""
    model, cfg, _ = load_model(checkpoint)
    overrides = {k: v for k, v in cfg.items() if k not in ("profile",)}
    overrides.update(content_scale=scale, steps=steps, lr=lr, seed=seed, eval_every=0, lr_schedule="constant",
                     task_weights={job: float(job in STYLES) for job in cfg["tasks"] + list(cfg["mixes"])},
                     device="cpu", amp=False)
    trainer = Trainer(profile=cfg["profile"], quiet=True, **overrides)
    trainer.model.load_state_dict(model.state_dict())
    return trainer.fit()


def score(trainer, n):
    val = load_dataset(trainer.config["data"], "val", trainer.config["size"], n, trainer.config["data_root"],
                       trainer.config["data_seed"])
    scores = evaluate(trainer.model, trainer.space, val, list(STYLES), trainer.perceptual)
    return {job: {"gram_ratio": s["gram"] / s["input_gram"], "edges": s["edges"]} for job, s in scores.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="data/checkpoints/proposed.pt")
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--n", type=int, default=64, help="validation images scored")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/content_sweep")
    parser.add_argument("--replot", action="store_true", help="only redraw the trade-off from OUT's json")
    args = parser.parse_args()
    out = Path(args.out)
    if args.replot:
        return plot_tradeoff(json.loads((out / "content_sweep.json").read_text())["rows"], out)
    out.mkdir(parents=True, exist_ok=True)
    rows, pictures = [], []
    val = load_dataset("scenes", "val", 64, 4)
    for scale in args.scales:
        started = time.perf_counter()
        trainer = fine_tune(args.checkpoint, scale, args.steps, args.lr, args.seed)
        rows.append({"content_scale": scale, "seconds": round(time.perf_counter() - started, 1),
                     **score(trainer, args.n)})
        images = val.batch(torch.arange(4))[0]
        pictures.append([run(trainer.model, trainer.space.vector(job), images) for job in STYLES])
        print(json.dumps(rows[-1]), flush=True)
    (out / "content_sweep.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1) + "\n")
    plot_tradeoff(rows, out)
    plot_pictures(rows, pictures, images, out)


def plot_tradeoff(rows, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for job, marker in zip(STYLES, "os"):
        x = [r[job]["gram_ratio"] for r in rows]
        y = [r[job]["edges"] for r in rows]
        ax.plot(x, y, marker=marker, label=job)
        for r, xi, yi in zip(rows, x, y):
            ax.annotate(f"x{r['content_scale']:g}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=9)
    ax.axhline(0.5, color="grey", ls="--", lw=1)
    ax.axvline(0.4, color="grey", ls=":", lw=1)
    ax.set_xlabel("Gram distance / the input's\n(lower: more of the painting)")
    ax.set_ylabel("edge correlation with the input\n(higher: more of the scene)")
    ax.set_title("Content weight sweep (validation images)", fontsize=10)
    ax.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "content_sweep.png", dpi=110)


def plot_pictures(rows, pictures, images, out):
    import matplotlib.pyplot as plt
    grid = [torch.cat([images, images])] + [torch.cat(p) for p in pictures]
    fig, axes = plt.subplots(len(grid), 1, figsize=(8, 1.3 * len(grid)))
    for ax, row, label in zip(axes, grid, ["input"] + [f"content x{r['content_scale']:g}" for r in rows]):
        strip = torch.cat(list(row), dim=2).permute(1, 2, 0).clamp(0, 1)
        ax.imshow(strip.numpy())
        ax.set_ylabel(label, fontsize=9, rotation=0, ha="right", va="center")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_title("Gogh (4 images), then Munch (4 images)" if len(grid) > 1 else "", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "content_sweep_pictures.png", dpi=110)


if __name__ == "__main__":
    main()
