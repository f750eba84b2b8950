"""Command line: ``python -m filmmtl {train,export,evaluate,demo,notebooks} --help``.

The options are the notebooks' parameters (profile, seed, device, data, data root, output); any other
config field of ``filmmtl.profiles`` is set with ``--set field=value`` (a Python literal).
"""
import argparse
import ast
import json
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

from filmmtl.files import DiskFull, Locked, atomic_write, check_output, check_writable, locked
from filmmtl.profiles import BASE, RECIPES


def parse_sets(pairs):
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or key not in BASE:
            raise SystemExit(f"--set takes field=value with a field of {sorted(BASE)}; got {pair!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def train(args):
    """Train a network (six tasks by default) and save a checkpoint with its command and config beside it."""
    out = check_writable(check_output(args.out, sidecar=True))
    check_writable(out.with_suffix(".json"))
    if int(os.environ.get("RANK", 0)) == 0:  # under torchrun rank 0 alone writes, so it alone locks
        with locked(out):
            train_into(out, args)
    else:
        train_into(out, args)


def train_into(out, args):
    """The body of ``train``, while ``out`` is locked against a second run writing it."""
    from filmmtl.distributed import leave
    from filmmtl.train import NonFiniteLoss, Trainer, provenance
    if out.exists() and not args.resume:
        raise SystemExit(f"{out} exists: pass --resume to continue it, or choose another --out "
                         "(nothing was overwritten)")
    if args.resume and not out.exists():
        raise SystemExit(f"--resume: there is no checkpoint at {out} to continue; drop --resume to start a new "
                         "run there")
    from filmmtl.profiles import make_config, recipe_overrides
    overrides, sets = {}, parse_sets(args.set)
    if args.recipe:  # its steps may follow a --set (comparison_draws)
        overrides = recipe_overrides(args.recipe, make_config(args.profile, **sets))
        if overrides.get("base_checkpoint"):  # the base network is trained first, beside --out
            overrides["base_checkpoint"] = str(out.parent / f"{overrides['base_checkpoint']}.pt")
    flags = dict(seed=args.seed, device=args.device, data=args.data, data_root=args.data_root,
                 steps=args.steps, method=args.method, mixes=args.mixes, model=args.model)
    overrides.update({k: v for k, v in flags.items() if v is not None})
    overrides.update(sets)
    trainer = Trainer(profile=args.profile, quiet=args.quiet, **overrides)
    if out.exists():
        trainer.load(out)
    origin = provenance(trainer)
    for note in (origin["feature_net"], origin["fid_network"]):
        print(f"provenance: {note}", file=sys.stderr)
    start = trainer.step_count
    if start >= trainer.config["steps"]:
        print(f"{out} is already complete at {start} steps; nothing to do")
    else:
        started = time.time()
        try:
            trainer.fit(checkpoint=out)
        except NonFiniteLoss as err:  # the message says where and what to change
            raise SystemExit(f"error: {err}") from None
        if trainer.rank == 0:  # under torchrun, rank 0 writes
            write_sidecar(trainer, out, start, time.time() - started)
    leave()


def write_sidecar(trainer, out, start, seconds):
    """The .json beside a trained checkpoint: the exact command, config, provenance and wall time."""
    from filmmtl.train import provenance
    launcher = "torchrun --nproc_per_node %d -m filmmtl " % trainer.world_size if trainer.world_size > 1 else \
        "python -m filmmtl "
    sidecar = {"command": launcher + shlex.join(sys.argv[1:]), "config": trainer.config,
               "provenance": provenance(trainer), "steps": trainer.step_count,
               "wall_minutes": wall_minutes(trainer.legs, start, seconds), "legs": trainer.legs}
    atomic_write(out.with_suffix(".json"), json.dumps(sidecar, indent=1))
    print(f"saved {out} after {trainer.step_count} steps")


def wall_minutes(legs, start, seconds):
    """This call's minutes and, where every leg since step 0 was recorded, the run's total (a run resumed
    across sessions or machines has several legs; each counts up to its last checkpoint)."""
    wall = {"from_step": start, "minutes": round(seconds / 60, 1)}
    if legs and legs[0]["from_step"] == 0 and all(a["to_step"] == b["from_step"] for a, b in zip(legs, legs[1:])):
        wall["total_minutes"] = round(sum(leg["seconds"] for leg in legs) / 60, 1)
    return wall


def export(args):
    """Make a shippable fp16 copy of a checkpoint (with its command) and update its line of the sha256 manifest."""
    from filmmtl.checkpoints import export_checkpoint
    source = Path(args.checkpoint)
    check_output(args.out, source, sidecar=True)
    command = args.command
    if command is None:
        sidecar = source.with_suffix(".json")
        if not sidecar.exists():
            raise SystemExit(f"{sidecar} is missing (train writes it beside the checkpoint, with the command that "
                             "made it); pass --command 'python -m filmmtl train ...' to record the command")
        try:
            made = json.loads(sidecar.read_text())
            command, wall = made["command"], made.get("wall_minutes")
        except (ValueError, TypeError, KeyError):
            raise SystemExit(f"{sidecar} is not the JSON train writes beside a checkpoint (no readable 'command'); "
                             "restore it, or pass --command 'python -m filmmtl train ...' to record the command") \
                from None
    else:
        wall = None
    print(f"saved {export_checkpoint(source, args.out, command, wall)}")


def evaluate(args):
    """Metrics of a checkpoint on the test split (or validation), per task and mix, and the quality bars with
    95% intervals and verdicts, as JSON."""
    import torch
    from filmmtl.data import load_dataset
    from filmmtl.evaluate import evaluate as run_evaluation, json_ready, quality_bars, strength_bars
    from filmmtl.evaluate import bar_intervals, seeded_values
    from filmmtl.losses import PerceptualLoss
    from filmmtl.tasks import TASKS, TaskSpace
    from filmmtl.train import load_model, resolve_device
    for flag, value, least in (("--seeds", args.seeds, 0), ("--fid", args.fid, 0), ("--n", args.n, 1)):
        if value is not None and value < least:
            raise SystemExit(f"{flag} must be at least {least}, got {value}")
    if args.out:
        check_output(args.out, args.checkpoint)
        if Path(args.out).exists() and not args.overwrite:
            raise SystemExit(f"{args.out} exists: pass --overwrite to replace it, or choose another --out "
                             "(nothing was overwritten)")
        check_writable(args.out)
    device = resolve_device(args.device)
    model, cfg, provenance = load_model(args.checkpoint, device)
    space = TaskSpace(cfg["tasks"])
    test = load_dataset(args.data or cfg["data"], args.split, cfg["size"], args.n or cfg["n_test"],
                        args.data_root or cfg["data_root"], cfg["data_seed"])
    perceptual = PerceptualLoss(cfg["feature_net"]).to(device) if any(TASKS[k].style for k in space) else None
    jobs = list(space.keys) + list(cfg["mixes"])
    scores = run_evaluation(model, space, test, jobs, perceptual, fid=args.fid, device=device)
    images = test.batch(torch.arange(len(test)))[0]
    bars = quality_bars(scores) + strength_bars(model, space, images, jobs[1:])
    report = {"checkpoint": str(args.checkpoint), "split": args.split, "provenance": dict(
              provenance, data_source=test.source, feature_net=perceptual.feature_net if perceptual else "none"),
              "scores": scores, "quality_bars": bars}
    if args.seeds:
        values, per_seed = seeded_values(model, space, test, list(space.keys), perceptual, seeds=args.seeds)
        report["bar_intervals"] = bar_intervals(values, per_seed)
    text = json.dumps(json_ready(report), indent=1, allow_nan=False)
    print(text)  # first: a report that cannot be written is still on screen
    if args.out:
        with locked(args.out):
            atomic_write(args.out, text)


def demo(args):
    """Build the paper's network, run every task vector through it, save a picture."""
    import torch
    from filmmtl import plots
    from filmmtl.data import embedded_scenes
    from filmmtl.models import build, count_parameters
    from filmmtl.tasks import TaskSpace
    torch.manual_seed(args.seed)
    space = TaskSpace()
    model = build("proposed", n_tasks=space.n, input_skip=False).eval()
    images = embedded_scenes("test", 128, n=1).batch(torch.arange(1))[0]
    vectors = torch.stack([space.vector(key) for key in space])
    with torch.no_grad():
        outputs = model(images.expand(len(vectors), -1, -1, -1), vectors)
    title = f"the paper's network, untrained ({count_parameters(model):,} parameters)"
    fig = plots.image_row(outputs, list(space), title)
    path = Path(args.out) / "demo.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    print(f"saved {path}")


def notebooks(args):
    """The main job: run every notebook in order with papermill, figures and tables into --out."""
    from filmmtl.notebooks import run_all
    run_all(profile=args.profile, out=args.out, only=args.only)


def exercises(args):
    """Write the student copies of the notebooks (nbgrader blanks the solutions) to notebooks/exercises."""
    from filmmtl.exercises import EXERCISES, write
    stale = write(check=args.check)
    if args.check and stale:
        raise SystemExit(f"out of date: {', '.join(p.name for p in stale)}; run python -m filmmtl exercises")
    print(f"{len(stale)} student copies {'out of date' if args.check else 'rewritten'} in {EXERCISES}")


def summary(command):
    """A command's docstring as argparse help text (which reads % as a format)."""
    return command.__doc__.replace("%", "%%")


def add_train(sub):
    p = sub.add_parser("train", help=summary(train), description=train.__doc__)
    p.add_argument("--profile", default="auto", help="auto (paper on a GPU, course on a CPU), smoke, course, paper")
    p.add_argument("--out", required=True, help="checkpoint path (.pt); a .json with command and config goes beside it")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint at --out exactly")
    p.add_argument("--recipe", help="a network of the paper's experiments (filmmtl.profiles.RECIPES): "
                                    + ", ".join(RECIPES))
    p.add_argument("--model", help="proposed (default), encin, johnson")
    p.add_argument("--method", type=int, choices=(1, 2, 3), help="combination method (paper section 3.3)")
    p.add_argument("--mixes", nargs="*", help="mixes to train, e.g. restoration+style_gogh")
    p.add_argument("--steps", type=int, help="total training steps (the profile's by default)")
    p.add_argument("--seed", type=int, help="random seed (0)")
    p.add_argument("--device", help="auto (cuda, mps, cpu), or a torch device name")
    p.add_argument("--data", choices=("scenes", "sbd", "voc"), help="embedded scenes (default), SBD or VOC")
    p.add_argument("--data-root", help="SBD/VOC folder (or $FILMMTL_SBD_ROOT / $FILMMTL_VOC_ROOT)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="any other config field")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=train)


def add_evaluate(sub):
    p = sub.add_parser("evaluate", help=summary(evaluate), description=evaluate.__doc__)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--n", type=int, help="number of images (the profile's n_test by default)")
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="test (report; the default) or val (the split every choice is made on)")
    p.add_argument("--seeds", type=int, default=3, metavar="S",
                   help="95%% intervals of the quality bars: bootstrap over images, degradations drawn with S "
                        "seeds (0: none)")
    p.add_argument("--fid", type=int, default=0, metavar="N",
                   help="also FID on N outputs of each style task and mix (slow on a CPU; 0 = off)")
    p.add_argument("--device", default="auto")
    p.add_argument("--data", choices=("scenes", "sbd", "voc"))
    p.add_argument("--data-root")
    p.add_argument("--out", help="write the JSON report here too (an existing file only with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="let --out replace an existing report")
    p.set_defaults(func=evaluate)


def add_others(sub):
    p = sub.add_parser("export", help=summary(export), description=export.__doc__)
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by train (its .json beside it)")
    p.add_argument("--out", required=True, help="e.g. data/checkpoints/proposed.pt")
    p.add_argument("--command", help="the command that trained it (default: from the .json beside --checkpoint)")
    p.set_defaults(func=export)

    p = sub.add_parser("demo", help=summary(demo), description=demo.__doc__)
    p.add_argument("--out", default="results")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=demo)

    p = sub.add_parser("notebooks", help=summary(notebooks), description=notebooks.__doc__)
    p.add_argument("--profile", default="auto")
    p.add_argument("--out", default="results")
    p.add_argument("--only", nargs="*", help="run only notebooks whose names contain these strings")
    p.set_defaults(func=notebooks)

    p = sub.add_parser("exercises", help=summary(exercises), description=exercises.__doc__)
    p.add_argument("--check", action="store_true", help="only check that the copies are up to date")
    p.set_defaults(func=exercises)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m filmmtl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_train, add_evaluate, add_others):
        add(sub)
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.filterwarnings("default", module="filmmtl")  # show our own offline notices once
        try:
            args.func(args)
        except (ValueError, FileNotFoundError, DiskFull, Locked) as err:
            # bad input or a fault of this machine: the message names the problem and the fix
            raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    sys.exit(main())
