"""The learning rate of a new task's generator column, chosen on validation images (notebook 05).

For each rate, the shipped network learns x2 super-resolution in its new column alone (300 steps, batch 8,
the train split) and is scored on 64 validation images. Run: `python bench/new_task_lr.py`.
"""
import argparse

import torch

from filmmtl.data import load_dataset
from filmmtl.evaluate import run
from filmmtl.metrics import psnr
from filmmtl.new_task import fit_new_task, with_task
from filmmtl.session import Session
from filmmtl.tasks import TASKS, TaskSpace


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2, 3e-2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--task", default="super_resolution")
    args = parser.parse_args()
    session = Session(profile="course")
    model, config, _, _ = session.network("proposed")
    space = TaskSpace(config["tasks"])
    train = load_dataset(config["data"], "train", config["size"], config["n_train"], config["data_root"],
                         config["data_seed"])
    val = load_dataset(config["data"], "val", config["size"], 64, config["data_root"], config["data_seed"])
    images = val.batch(torch.arange(len(val)))[0]
    degraded, _ = TASKS[args.task].make_input(images, torch.Generator().manual_seed(0))
    print(f"{args.task}, {args.steps} steps, {len(images)} validation images; the degraded input: "
          f"{float(psnr(degraded, images).mean()):.2f} dB")
    for lr in args.rates:
        grown, grown_space = with_task(model, space, args.task)
        fit_new_task(grown, grown_space, args.task, train, args.steps, lr=lr)
        print(f"lr {lr:g}: {float(psnr(run(grown, grown_space.vector(args.task), degraded), images).mean()):.2f} dB")


if __name__ == "__main__":
    main()
