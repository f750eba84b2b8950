"""Evaluation: metrics per task and mix on a test split, strength sweeps (paper Fig. 5 and 7).

Inputs are made with a generator seeded per job, so every model sees the same degraded images.
Each task also reports the trivial answer's scores (``input_*``: the degraded input returned as is).
"""
import functools

import torch

from filmmtl import metrics
from filmmtl.tasks import MIXES, TASKS, make_input, mix_teacher

EVAL_SEED = 1234


@functools.lru_cache(maxsize=1)
def inception():
    return metrics.InceptionFeatures()


def job_inputs(job, images, seed=EVAL_SEED):
    g = torch.Generator().manual_seed(seed + sum(map(ord, job)))
    return make_input(job.split("+"), images, g)


@torch.no_grad()
def run(model, vector, inputs, batch_size=32):
    device = next(model.parameters()).device
    return torch.cat([model(inputs[i:i + batch_size].to(device), vector.to(device)).float().cpu()
                      for i in range(0, len(inputs), batch_size)]).clamp(0, 1)


def score_images(metrics_wanted, output, target, masks, region, perceptual, style, prefix=""):
    """The per-image metrics of one batch as {name: tensor or (inter, union)}."""
    out = {}
    if target is not None:
        out[prefix + "psnr"] = metrics.psnr(output, target)
        out[prefix + "ssim"] = metrics.ssim(output, target)
    if "hole_psnr" in metrics_wanted and region is not None:
        out[prefix + "hole_psnr"] = metrics.psnr(output, target, region)
    if "iou" in metrics_wanted:
        out[prefix + "iou"] = metrics.iou_counts(output, masks)
    if style and perceptual is not None:
        out[prefix + "gram"] = perceptual.gram_distance(output, style).cpu()
    return out


@torch.no_grad()
def evaluate(model, space, test_set, jobs, perceptual=None, n=None, fid=False, batch_size=32, device="cpu"):
    """{job: {metric: value}} over the first ``n`` test images for each task or mix in ``jobs``."""
    was_training = model.training
    model.eval()
    n = len(test_set) if n is None else min(n, len(test_set))
    images, masks = test_set.batch(torch.arange(n))
    results = {}
    for job in jobs:
        parts = job.split("+")
        inputs, region = job_inputs(job, images)
        output = run(model, space.vector(job), inputs, batch_size)
        styles = [TASKS[p].style for p in parts if TASKS[p].style]
        style = styles[0] if styles else None
        wanted = set().union(*(TASKS[p].metrics for p in parts))
        if job in MIXES:
            stylise = lambda key, x: run(model, space.vector(key), x, batch_size)
            target = mix_teacher(MIXES[job], images, masks, stylise)
            values = {"teacher_l2": metrics.mse(output, target)}
            if style:  # a stylised mix has no fixed target image: PSNR/SSIM only against segmentation
                target = None
        else:
            task = TASKS[job]
            target = task.make_target(images, masks) if task.make_target else None
            values = {}
        values.update(score_images(wanted, output, target, masks, region, perceptual, style))
        values.update(score_images(wanted, inputs, target, masks, region, perceptual, style, "input_"))
        if job in MIXES and "segmentation" in parts:
            values["iou"] = metrics.iou_counts(output, masks)
        scores = metrics.summarise({k: [v] for k, v in values.items()})
        if fid and style:
            reference = metrics.style_reference(style, n, images.shape[-1])
            scores["fid"] = metrics.fid(output, reference, inception())
            scores["fid_network"] = inception().source
        results[job] = scores
    model.train(was_training)
    return results


@torch.no_grad()
def strength_sweep(model, space, images, job, strengths=(0.0, 0.25, 0.5, 0.75, 1.0), batch_size=32):
    """Outputs for c = strength x (the job's vector), from the identity (0) to the full task or mix (1).

    The input is the job's input (degraded where the job degrades). Returns (len(strengths), B, 3, H, W).
    """
    inputs, _ = job_inputs(job, images)
    full = space.vector(job)
    return torch.stack([run(model, s * full, inputs, batch_size) for s in strengths])


def sweep_distances(outputs):
    """Mean L2 of each sweep output to the c = 0 output and to the c = 1 output (paper Fig. 5's claim:
    the first rises and the second falls monotonically)."""
    to_start = [float((o - outputs[0]).square().mean()) for o in outputs]
    to_end = [float((o - outputs[-1]).square().mean()) for o in outputs]
    return to_start, to_end


def is_monotonic(values, rising):
    pairs = list(zip(values[:-1], values[1:]))
    return all(b > a for a, b in pairs) if rising else all(b < a for a, b in pairs)
