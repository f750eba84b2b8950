"""Design study: train named variants of the proposed network at one budget and print one table.

Every variant is the course profile's six-task network (no mixes) with a few config overrides; each
runs in its own process on one thread (``--jobs`` at a time), checkpoints as it goes and resumes where it
stopped, and leaves ``OUT/NAME.json`` with its scores. The table is made from those files:

    python bench/design_study.py --steps 1500 --jobs 2            # all variants
    python bench/design_study.py --variants shipped balance       # some of them
    python bench/design_study.py --table                          # only print what is done

Every score is on the first VAL_IMAGES of the validation split: this is where designs are chosen.
Columns: reconstruction PSNR; completion's PSNR gain in the hole and restoration's over the degraded
input; segmentation IoU; Gram distance / the input's for both styles; how far the restoration slider
moves (MSE between its c=1 and c=0 outputs / the noise's MSE); training minutes; parameters.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from filmmtl.config import ADDED_FIELDS
from filmmtl.profiles import FAVOUR_L2, LITERAL, ONLY

VAL_IMAGES = 200
SMALL_INIT = dict(generator_init_std=0.01)
BALANCED = dict(SMALL_INIT, balance="grad_norm")
WEIGHTED = dict(BALANCED, output_scale="std", output_gate=True, task_weights=FAVOUR_L2)  # the shipped design
SKIP0_WEIGHTED = dict(WEIGHTED, feature_skips=[0])
# name -> config overrides of the course profile, on top of SHIPPED: the design of the networks shipped
# before the study (input skip only). "paper" is the paper's network taken literally.
# Every row runs in fp32 (the course profile's bf16 came after the study) unless a variant says otherwise.
SHIPPED = dict({k: v for k, v in ADDED_FIELDS.items() if k in LITERAL}, amp=False)
VARIANTS = {
    "paper": LITERAL,
    "shipped": dict(),
    "small_init": SMALL_INIT,
    "balance": BALANCED,
    "balance_skip0": dict(BALANCED, feature_skips=[0]),
    "balance_skip01": dict(BALANCED, feature_skips=[0, 1]),
    "balance_skip0_std": dict(BALANCED, feature_skips=[0], output_scale="std"),
    "balance_skip01_lr2e-3": dict(BALANCED, feature_skips=[0, 1], lr=2e-3),
    "balance_skip01_bs16": dict(BALANCED, feature_skips=[0, 1], batch_size=16),
    "gate_std": dict(SMALL_INIT, output_scale="std", output_gate=True),
    "gate_std_skip0": dict(SMALL_INIT, output_scale="std", output_gate=True, feature_skips=[0]),
    "gate_std_balance": dict(BALANCED, output_scale="std", output_gate=True),
    "gate_std_skip0_balance": dict(BALANCED, output_scale="std", output_gate=True, feature_skips=[0]),
    # Sampling weights: the tasks that miss their bars (and cost an L2 step, a quarter of a perceptual one)
    # are drawn more often.
    "gate_std_balance_weighted": WEIGHTED,
    "gate_std_skip0_balance_weighted": SKIP0_WEIGHTED,
    # CPU speed (adopt a setting only if the scores stay within seed noise): bf16 autocast, and the same
    # recipe with another seed to show the noise.
    "gate_std_skip0_balance_weighted_bf16": dict(SKIP0_WEIGHTED, amp=True),
    "gate_std_skip0_balance_weighted_seed1": dict(SKIP0_WEIGHTED, seed=1),
    # Learning rate and batch size on top of the shipped design.
    "gate_std_balance_weighted_lr2e-3": dict(WEIGHTED, lr=2e-3),
    "gate_std_balance_weighted_bs16": dict(WEIGHTED, batch_size=16),
    # Completion's adversarial term (0.004, the authors' value): off, on top of the shipped design.
    "gate_std_balance_weighted_no_adversarial": dict(WEIGHTED, adversarial_weight=0.0),
    # Image size for the styles (scored at the size trained: the Gram ratio is per image, so it compares).
    "gate_std_balance_weighted_size96": dict(WEIGHTED, size=96),
    "gate_std_balance_weighted_size128": dict(WEIGHTED, size=128),
    # Ceilings: the same network trained on one task only (the other columns are then meaningless).
    "only_completion": dict(SKIP0_WEIGHTED, task_weights=ONLY("completion")),
    "only_restoration": dict(SKIP0_WEIGHTED, task_weights=ONLY("restoration")),
    "only_completion_no_adversarial": dict(SKIP0_WEIGHTED, task_weights=ONLY("completion"), adversarial_weight=0.0),
}


def run_variant(name, steps, out):
    """Train (or resume) one variant and write its scores."""
    import torch
    from filmmtl.evaluate import job_inputs, json_ready, quality_bars, strength_sweep, sweep_distances
    from filmmtl.models import count_parameters
    from filmmtl.train import Trainer, provenance
    torch.set_num_threads(1)
    checkpoint = out / f"{name}.pt"
    trainer = Trainer(profile="course", quiet=True, steps=steps, n_val=VAL_IMAGES, **{**SHIPPED, **VARIANTS[name]})
    if checkpoint.exists():
        trainer.load(checkpoint)
    start, resumed_at = time.time(), trainer.step_count
    trainer.fit(checkpoint=checkpoint)
    train_seconds = time.time() - start
    scores = trainer.evaluate()  # validation images: a design is chosen here, never on test
    images = trainer.val_set.batch(torch.arange(len(trainer.val_set)))[0]
    to_start, _ = sweep_distances(strength_sweep(trainer.model, trainer.space, images, "restoration"))
    noisy, _ = job_inputs("restoration", images)
    result = {
        "variant": name, "overrides": VARIANTS[name], "steps": steps, "resumed_at": resumed_at,
        "train_minutes_this_process": round(train_seconds / 60, 1), "parameters": count_parameters(trainer.model),
        "feature_net": provenance(trainer)["feature_net"], "scores": scores,
        "quality_bars": quality_bars(scores),
        "restoration_slider": to_start[-1] / float((noisy - images).square().mean()),
    }
    (out / f"{name}.json").write_text(json.dumps(json_ready(result), indent=1, allow_nan=False))


def row(result):
    s = result["scores"]
    return [result["variant"], f"{s['reconstruction']['psnr']:.1f}",
            f"{s['completion']['hole_psnr'] - s['completion']['input_hole_psnr']:+.2f}",
            f"{s['restoration']['psnr'] - s['restoration']['input_psnr']:+.2f}",
            f"{s['segmentation']['iou']:.3f}",
            f"{s['style_gogh']['gram'] / s['style_gogh']['input_gram']:.2f}",
            f"{s['style_munch']['gram'] / s['style_munch']['input_gram']:.2f}",
            f"{result['restoration_slider']:.2f}", f"{result['train_minutes_this_process']:g}",
            f"{result['parameters']:,}"]


HEADER = ["variant", "recon dB", "hole gain dB", "restoration gain dB", "IoU", "Gram Gogh", "Gram Munch",
          "restoration slider", "train min", "parameters"]
BARS = ["bar", ">= 30", ">= +3", ">= +5", ">= 0.85", "<= 0.4", "<= 0.4", ">= 0.5", "", ""]


def table(out, names):
    rows = [HEADER, BARS]
    for name in names:
        path = out / f"{name}.json"
        if path.exists():
            result = json.loads(path.read_text())
            rows.append(row(result))
    lines = [f"course profile, six tasks, {out.name} steps, 200 test images", "",
             "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), help=", ".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--jobs", type=int, default=2, help="variants trained at once, one thread each")
    parser.add_argument("--out", default="runs/design_study", help="results go to OUT/STEPS/")
    parser.add_argument("--table", action="store_true", help="only print the table of finished variants")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # one variant, in a child process
    args = parser.parse_args()
    unknown = [v for v in args.variants + [args.run or "shipped"] if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    out = Path(args.out) / str(args.steps)
    out.mkdir(parents=True, exist_ok=True)
    if args.run:
        return run_variant(args.run, args.steps, out)
    if not args.table:
        pending = [v for v in args.variants if not (out / f"{v}.json").exists()]
        running = []
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        while pending or running:
            while pending and len(running) < args.jobs:
                name = pending.pop(0)
                log = open(out / f"{name}.log", "w")
                running.append((name, subprocess.Popen([sys.executable, __file__, "--run", name, "--steps",
                                                        str(args.steps), "--out", args.out],
                                                       env=env, stdout=log, stderr=subprocess.STDOUT)))
            time.sleep(5)
            for name, proc in list(running):
                if proc.poll() is not None:
                    running.remove((name, proc))
                    print(f"{name}: {'done' if proc.returncode == 0 else f'FAILED, see {out / name}.log'}",
                          flush=True)
    print(table(out, args.variants))


if __name__ == "__main__":
    main()
