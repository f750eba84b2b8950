"""Evaluation: metrics per task and mix on a test split, strength sweeps (paper Fig. 5 and 7).

Inputs are made with random numbers seeded per job, so every model sees the same degraded images.
Each task also reports the trivial answer's scores (``input_*``: the degraded input returned as is).
"""
import functools
import hashlib
import json
import math
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch

from filmmtl import metrics
from filmmtl.intervals import N_BOOT, SEEDS, average_seeds, bootstrap, metric_intervals, verdict
from filmmtl.files import atomic_write
from filmmtl.tasks import MIXES, TASKS, job_target, make_input

EVAL_SEED = 1234


@functools.lru_cache(maxsize=1)
def inception():
    return metrics.InceptionFeatures()


@functools.lru_cache(maxsize=8)
def reference_statistics(style, n, size):
    """Inception statistics of FID's reference set for a style (computed once per process)."""
    reference = metrics.style_reference(style, n, size)
    return metrics.feature_statistics(metrics.inception_features(reference, inception()))


def fid_to_style(images, style):
    """FID of outputs against random crops of the painting (as many as outputs; see style_reference)."""
    stats = metrics.feature_statistics(metrics.inception_features(images, inception()))
    return metrics.frechet_distance(*stats, *reference_statistics(style, len(images), images.shape[-1]))


def job_inputs(job, images, seed=EVAL_SEED):
    g = torch.Generator().manual_seed(seed + sum(map(ord, job)))
    return make_input(job.split("+"), images, g)


# The code whose change makes cached scores stale: a cache key includes a checksum of these files.
SCORING_CODE = ("evaluate.py", "intervals.py", "metrics.py", "tasks.py", "losses.py", "backbone.py", "models.py",
                "baselines.py")


def checksum(*tensors):
    """sha256 of tensors' bytes (a network's weights, a test set): the identity of what is scored."""
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def evaluation_key(model, test_set, jobs, feature_net, fid, stylist=None):
    """What evaluate's scores depend on: the weights (and the teachers' stylist's), the test images and masks,
    the jobs, the feature network, the FID sample count and the scoring code."""
    here = Path(__file__).parent
    images, masks = test_set.batch(torch.arange(len(test_set)))
    parts = [checksum(*model.state_dict().values()), checksum(images, masks), ",".join(jobs), str(feature_net),
             checksum(*stylist[0].state_dict().values()) if stylist else "own teachers",
             str(fid), (metrics.fid_network_source() or "no-fid") if fid else "no-fid"]
    parts += [hashlib.sha256((here / name).read_bytes()).hexdigest() for name in SCORING_CODE]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def evaluate_cached(cache_dir, model, space, test_set, jobs, perceptual=None, fid=0, device="cpu", stylist=None,
                    seeds=0, only=None):
    """``evaluate`` remembered in ``cache_dir``: a re-run with unchanged networks, test set and scoring code
    reads the scores back (seconds instead of minutes); any change to them is a new key. ``seeds`` > 0
    adds each metric's 95% interval (``intervals.metric_intervals``) under "intervals". Returns
    (scores, whether they came from the cache)."""
    feature_net = getattr(perceptual, "feature_net", None)
    tag = f"{fid}|seeds={seeds}" if seeds else fid
    if only is not None:
        tag = f"{tag}|only={','.join(sorted(only))}"
    path = Path(cache_dir) / f"{evaluation_key(model, test_set, jobs, feature_net, tag, stylist)}.json"
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            stored = None
        if isinstance(stored, dict) and set(jobs) <= set(stored) and (not seeds or "intervals" in stored):
            return stored, True
        # a damaged or foreign cache file is scored again and replaced
    scores = evaluate(model, space, test_set, jobs, perceptual, fid=fid, device=device, stylist=stylist, seeds=seeds,
                      only=only)
    text = json.dumps(scores)
    atomic_write(path, text)
    return json.loads(text), False  # the same values a later read of the cache gives


@torch.no_grad()
def run(model, vector, inputs, batch_size=32):
    device = next(model.parameters()).device
    return torch.cat([model(inputs[i:i + batch_size].to(device), vector.to(device)).float().cpu()
                      for i in range(0, len(inputs), batch_size)]).clamp(0, 1)


@dataclass(frozen=True)
class Scoring:
    """What a batch's metrics may need besides the output: the target image (None for a style), the masks,
    completion's hole, the perceptual network, the painting's name (styles) and the clean scene."""
    target: torch.Tensor
    masks: torch.Tensor
    region: torch.Tensor
    perceptual: object
    style: str
    content: torch.Tensor


def _gram(output, s):
    if not s.style or s.perceptual is None:
        return None
    chunks = output.split(metrics.scoring_batch(output.device))
    return torch.cat([s.perceptual.gram_distance(chunk, s.style).cpu() for chunk in chunks])


def _edges(output, s):
    return None if not s.style or s.content is None else metrics.edge_correlation(output, s.content)


# The per-image metrics a task may list by name (``Task.metrics``), in the order reports show them: each
# gives a value per image (IoU: intersection and union counts), or None where it does not apply. A task
# may also list a callable ``metric(output, target)``, reported under its ``__name__``.
METRICS = {
    "psnr": lambda output, s: None if s.target is None else metrics.psnr(output, s.target),
    "ssim": lambda output, s: None if s.target is None else metrics.ssim(output, s.target),
    "hole_psnr": lambda output, s: None if s.region is None or s.target is None else metrics.psnr(output, s.target,
                                                                                                   s.region),
    "iou": lambda output, s: metrics.iou_counts(output, s.masks),
    "gram": _gram,  # distance of the output's Gram matrices to the painting's
    "edges": _edges,  # how much of the scene's outlines a style keeps
}
SPLIT_METRICS = ("fid",)  # over a split's outputs at once: ``evaluate`` computes it


def metric_name(metric):
    return metric.__name__ if callable(metric) else metric


def job_metrics(job):
    """The metrics a task lists, or for a mix those of its parts."""
    return set().union(*(TASKS[part].metrics for part in job.split("+")))


def check_metrics(keys):
    """Every metric the tasks ``keys`` list is known, or a clear error naming what a task may list."""
    for key in keys:
        unknown = [m for m in TASKS[key].metrics if not callable(m) and m not in {*METRICS, *SPLIT_METRICS}]
        if unknown:
            raise ValueError(f"task {key!r} lists unknown metrics {unknown}; list names from "
                             f"{sorted({*METRICS, *SPLIT_METRICS})} or a callable metric(output, target)")


def score_images(wanted, output, target, masks, region, perceptual, style, prefix="", content=None):
    """The per-image metrics ``wanted`` of one batch as {name: tensor or (inter, union)}, those that apply."""
    scoring = Scoring(target, masks, region, perceptual, style, content)
    out = {}
    for metric in [m for m in METRICS if m in wanted] + [m for m in wanted if callable(m)]:
        if callable(metric):
            value = None if target is None else metric(output, target)
        else:
            value = METRICS[metric](output, scoring)
        if value is not None:
            out[prefix + metric_name(metric)] = value
    return out


_INPUT_SCORES = weakref.WeakKeyDictionary()  # perceptual network -> {content checksum: the input's scores}
_NO_PERCEPTUAL = type("NoPerceptual", (), {})()


def input_scores(wanted, inputs, target, masks, region, perceptual, style, content):
    """``score_images`` of the degraded input itself ("input_*"): it does not depend on the network, so
    every network scored on the same images, degradations and perceptual network shares one computation."""
    key = "|".join([checksum(*(t for t in (inputs, target, masks, region, content) if t is not None)),
                    ",".join(sorted(map(metric_name, wanted))), str(style), str(target is None), str(region is None)])
    memo = _INPUT_SCORES.setdefault(perceptual if perceptual is not None else _NO_PERCEPTUAL, {})
    if key not in memo:
        if len(memo) > 256:  # bounded: a long session scoring many test sets
            memo.clear()
        memo[key] = score_images(wanted, inputs, target, masks, region, perceptual, style, "input_", content)
    return memo[key]


def wanted_metrics(job, only=None):
    """The metrics to compute for ``job``: those its tasks list (``job_metrics``), and of them only the names
    in ``only`` when given (a cell that shows one metric need not pay for the others)."""
    return {m for m in job_metrics(job) if only is None or metric_name(m) in only}


def job_teacher(model, space, job, images, masks, stylist=None, batch_size=32):
    """``job_target`` of clean ``images``: a style part made by ``stylist`` = (network, its TaskSpace), or by
    the network itself. It does not depend on the degradation seed, so ``seed_runs`` makes it once."""
    style_net, style_space = stylist or (model, space)
    return job_target(job, images, masks, lambda key, x: run(style_net, style_space.vector(key), x, batch_size))


@torch.no_grad()
def job_values(model, space, job, images, masks, perceptual=None, batch_size=32, stylist=None, seed=EVAL_SEED,
               only=None, target=None):
    """(output, per-image metric values of ``job``): {name: (B,) tensor, or (intersections, unions) for IoU}.
    ``seed`` draws the degradations (holes, noise); evaluate's default makes every network see the same.
    ``only``: compute just these metric names (and ``teacher_l2``, a mix's distance to its teacher, only
    when listed). ``target``: the job's ``job_teacher`` when the caller has it already."""
    parts = job.split("+")
    inputs, region = job_inputs(job, images, seed)
    output = run(model, space.vector(job), inputs, batch_size)
    if not torch.isfinite(output).all():
        raise ValueError(f"the network's output for {job} is not finite (NaN or inf) on "
                         f"{int((~torch.isfinite(output)).sum())} "
                         "values: its weights are damaged or its training diverged; nothing was scored. Check the "
                         "checkpoint (torch.isfinite on each weight) or train it again")
    styles = [TASKS[p].style for p in parts if TASKS[p].style]
    style = styles[0] if styles else None
    wanted = wanted_metrics(job, only)
    if target is None:
        target = job_teacher(model, space, job, images, masks, stylist, batch_size)
    values = {}
    if job in MIXES:
        if only is None or "teacher_l2" in only:
            values["teacher_l2"] = metrics.mse(output, target)
        if style:  # a stylised mix has no fixed target image: PSNR/SSIM only against segmentation
            target = None
    if wanted:
        values.update(score_images(wanted, output, target, masks, region, perceptual, style, content=images))
        values.update(input_scores(wanted, inputs, target, masks, region, perceptual, style, images))
    return output, values


def seed_runs(model, space, job, images, masks, perceptual=None, seeds=1, batch_size=32, stylist=None, only=None):
    """``job_values`` at degradation seeds EVAL_SEED, EVAL_SEED + 1, ...: [(output, values)]. A job whose
    inputs no seed changes (reconstruction, segmentation, the styles) is scored once."""
    drawn = not torch.equal(job_inputs(job, images[:4], EVAL_SEED)[0], job_inputs(job, images[:4], EVAL_SEED + 1)[0])
    target = job_teacher(model, space, job, images, masks, stylist, batch_size)
    return [job_values(model, space, job, images, masks, perceptual, batch_size, stylist, EVAL_SEED + k, only, target)
            for k in range(seeds if drawn else 1)]


def check_jobs(space, jobs, only=None):
    check_metrics(space.keys)
    if isinstance(only, str):
        raise TypeError(f"only= takes a list of metric names, e.g. [{only!r}], not one string")
    known = {"teacher_l2", *METRICS, *SPLIT_METRICS, *(metric_name(m) for k in space.keys for m in TASKS[k].metrics)}
    if only is not None and not set(only) <= known:
        raise ValueError(f"only= lists unknown metrics {sorted(set(only) - known)}; choose from {sorted(known)}")
    unknown = [j for j in jobs if not (j in space.keys or (j in MIXES and set(MIXES[j].parts) <= set(space.keys)))]
    if unknown:
        raise ValueError(f"cannot evaluate {unknown}: this network's jobs are its tasks {list(space.keys)} and the "
                         f"mixes of them {[m for m in MIXES if set(MIXES[m].parts) <= set(space.keys)]}")


@torch.no_grad()
def evaluate(model, space, test_set, jobs, perceptual=None, n=None, fid=0, batch_size=32, device="cpu",
             stylist=None, seeds=0, only=None):
    """{job: {metric: value}} over the first ``n`` images of a split (validation while choosing, test to
    report) for each task or mix in ``jobs``; ``fid`` > 0 adds FID on the first ``fid`` outputs of style
    tasks and mixes (Inception is slow on a CPU). ``seeds`` > 0 adds each metric's 95% interval over
    that many degradation seeds under "intervals" (``intervals.metric_intervals``); the first seed's
    scores are the ones reported. ``only`` = metric names: compute just those (``teacher_l2`` included).

    A stylised mix's teacher (``teacher_l2``) is made with the network's own style output, as method 3
    trains it, unless ``stylist`` = (network, its TaskSpace) gives one common style network, so that
    several networks are measured against the same teacher images."""
    check_jobs(space, jobs, only)
    was_training = model.training
    model.eval()
    n = len(test_set) if n is None else min(n, len(test_set))
    images, masks = test_set.batch(torch.arange(n))
    results, seeded = {}, {}
    for job in jobs:
        runs = seed_runs(model, space, job, images, masks, perceptual, max(seeds, 1), batch_size, stylist, only)
        output, values = runs[0]
        seeded[job] = [v for _, v in runs]
        scores = metrics.summarise({k: [v] for k, v in values.items()})
        style = next((TASKS[p].style for p in job.split("+") if TASKS[p].style), None)
        if fid and style and "fid" in wanted_metrics(job, only):
            try:
                scores["fid"] = fid_to_style(output[:fid], style)
            except metrics.FIDUnavailable:  # reported as such, never a number from random weights
                scores["fid"] = "unavailable"
        results[job] = scores
    if seeds:
        results["intervals"] = metric_intervals({job: average_seeds(runs) for job, runs in seeded.items()})
    model.train(was_training)
    return results


@torch.no_grad()
def seeded_values(model, space, data, jobs, perceptual=None, seeds=SEEDS, n=None, batch_size=32, stylist=None):
    """Per-image values of each job averaged over ``seeds`` degradation seeds, and each seed's summary:
    ({job: {metric: per-image values}}, {job: [scores at seed k]}). ``stylist``: as in ``evaluate``."""
    check_jobs(space, jobs)
    model.eval()
    images, masks = data.batch(torch.arange(min(n or len(data), len(data))))
    values, per_seed = {}, {}
    for job in jobs:
        runs = [v for _, v in seed_runs(model, space, job, images, masks, perceptual, seeds, batch_size, stylist)]
        per_seed[job] = [metrics.summarise({k: [v] for k, v in r.items()}) for r in runs]
        values[job] = average_seeds(runs)
    return values, per_seed


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


# The quality bars the project holds a course-profile network to (README, "Results"): (job, what,
# its value from the job's scores, threshold, True when the value must be at least the threshold).
QUALITY_BARS = (
    ("reconstruction", "PSNR (dB)", lambda s: s["psnr"], 30.0, True),
    ("completion", "hole PSNR gain over the unfilled input (dB)", lambda s: s["hole_psnr"] - s["input_hole_psnr"],
     3.0, True),
    ("restoration", "PSNR gain over the degraded input (dB)", lambda s: s["psnr"] - s["input_psnr"], 5.0, True),
    ("segmentation", "IoU", lambda s: s["iou"], 0.85, True),
    ("style_gogh", "Gram distance / the input's", lambda s: s["gram"] / s["input_gram"], 0.4, False),
    ("style_munch", "Gram distance / the input's", lambda s: s["gram"] / s["input_gram"], 0.4, False),
    # A style keeps the scene (issue 27): Sobel edges of its output correlate with the input's.
    ("style_gogh", "edge correlation with the input", lambda s: s["edges"], 0.5, True),
    ("style_munch", "edge correlation with the input", lambda s: s["edges"], 0.5, True),
)
EDGES = QUALITY_BARS[-1][1]
# The restoration slider must visibly act: its c=1 output at least this share of the noise's energy (MSE)
# away from its c=0 output.
SLIDER_SHARE = 0.5
# A run has stopped rising (issue 12: compared networks trained until then) when its last eighth of steps made
# under this share of each quality bar's change since its first validation (an even pace makes 1/8).
SETTLED_SHARE = 0.1


def quality_bars(scores):
    """Each quality bar whose task was evaluated: {job, bar, value, threshold, holds}."""
    rows = []
    for job, what, value_of, threshold, at_least in QUALITY_BARS:
        if job in scores and (what != EDGES or "edges" in scores[job]):  # histories before the edge score
            value = float(value_of(scores[job]))
            holds = value >= threshold if at_least else value <= threshold
            rows.append({"job": job, "bar": f"{what} {'>=' if at_least else '<='} {threshold:g}",
                         "value": round(value, 4), "threshold": threshold, "holds": holds, "at_least": at_least})
    return rows


def bar_intervals(values, per_seed, n_boot=N_BOOT):
    """Each quality bar with its value (mean over seeds), 95% interval, per-seed values and verdict."""
    rows = []
    for job, what, value_of, threshold, at_least in QUALITY_BARS:
        if job not in values:
            continue
        summary = metrics.summarise({k: [v] for k, v in values[job].items()})
        low, high = bootstrap(values[job], value_of, n_boot)
        seed_values = [round(float(value_of(s)), 4) for s in per_seed[job]]
        rows.append({"job": job, "bar": f"{what} {'>=' if at_least else '<='} {threshold:g}",
                     "value": round(float(value_of(summary)), 4), "low": round(low, 4), "high": round(high, 4),
                     "per_seed": seed_values, "threshold": threshold, "at_least": at_least,
                     "verdict": verdict(low, high, threshold, at_least)})
    return rows


def bar_trajectory(history, step):
    """Each quality bar's value at a run's first validation, at its last one up to ``step`` and at its final
    one: (job, at_least, first, at_step, final). None when the run has no validation up to ``step`` and after
    it (``eval_every=0``, or a run shorter than ``step``)."""
    points = [(h["step"], quality_bars(h["scores"])) for h in history if h.get("job") == "validation"]
    before = [bars for at, bars in points if at <= step]
    if not before or points[-1][0] <= step:
        return None
    return [(mid["job"], mid["at_least"], first["value"], mid["value"], end["value"])
            for first, mid, end in zip(points[0][1], before[-1], points[-1][1])]


def gains_after(history, step):
    """The quality bars a run still improved on after ``step``: (job, value at the last validation up to
    ``step``, final value) for each bar whose final validation is better; None as for ``bar_trajectory``."""
    rows = bar_trajectory(history, step)
    return None if rows is None else [(job, mid, end) for job, at_least, _, mid, end in rows
                                      if (end > mid) == at_least and end != mid]


def late_share(history, step):
    """How much of each bar's change over a run came after ``step``: (job, (final - at step) / (final -
    first)). Near 0 for a run whose scores have stopped moving; 1/8 for the last eighth of a run that rose
    at an even pace; negative where the bar fell back late. None as for ``bar_trajectory``."""
    rows = bar_trajectory(history, step)
    return None if rows is None else [(job, (end - mid) / (end - first) if end != first else 0.0)
                                      for job, _, first, mid, end in rows]


def strength_bars(model, space, images, jobs, batch_size=32):
    """The strength bar (paper Fig. 5 for tasks, Fig. 7 for mixes) for each job, over ``images``; for
    restoration also the slider bar (its c=1 output moves at least SLIDER_SHARE of the noise's energy)."""
    rows = []
    for job in jobs:
        to_start, to_end = sweep_distances(strength_sweep(model, space, images, job, batch_size=batch_size))
        rows.append({"job": job, "bar": "as c goes 0..1, L2 to the c=0 output rises and to the c=1 output falls",
                     "value": {"to_c0": [round(v, 6) for v in to_start], "to_c1": [round(v, 6) for v in to_end]},
                     "holds": is_monotonic(to_start, True) and is_monotonic(to_end, False)})
        if job == "restoration":
            noisy, _ = job_inputs(job, images)
            share = to_start[-1] / float((noisy - images).square().mean())
            rows.append({"job": job, "bar": f"c=1 output moves >= {SLIDER_SHARE:g} x the noise's MSE from c=0",
                         "value": round(share, 4), "threshold": SLIDER_SHARE, "holds": share >= SLIDER_SHARE})
    return rows


# On the photographs (data.PHOTOGRAPHS, 128 px): each must hold these, not only their mean (issue 27).
PHOTOGRAPH_BARS = {"reconstruction PSNR (dB)": (30.0, True), "restoration gain (dB)": (3.0, True)}


@torch.no_grad()
def photograph_scores(model, space, perceptual=None, size=128):
    """{row: {photograph: value}} on the photographs no training scene comes from: reconstruction PSNR,
    restoration's gain, and for each style its edge correlation with the photograph and Gram ratio."""
    from filmmtl.data import PHOTOGRAPHS, load_photograph
    model.eval()
    names = list(PHOTOGRAPHS)
    images = torch.stack([load_photograph(name, size) for name in names])
    masks = torch.zeros(len(names), size, size, dtype=torch.long)
    rows = {"reconstruction PSNR (dB)": job_values(model, space, "reconstruction", images, masks)[1]["psnr"]}
    restored = job_values(model, space, "restoration", images, masks)[1]
    rows["restoration gain (dB)"] = restored["psnr"] - restored["input_psnr"]
    for job in [k for k in space.keys if TASKS[k].style and perceptual is not None]:
        values = job_values(model, space, job, images, masks, perceptual)[1]
        rows[f"{job} edge correlation"] = values["edges"]
        rows[f"{job} Gram / input's"] = values["gram"] / values["input_gram"]
    return {row: dict(zip(names, (round(float(v), 4) for v in values))) for row, values in rows.items()}


def json_ready(report):
    """``report`` as standard JSON data: every NaN or infinity becomes null, and ``null_reasons`` says
    where and why (IoU is undefined when neither the output nor the target has an object pixel)."""
    reasons = {}

    def clean(value, path):
        if isinstance(value, dict):
            return {k: clean(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, float) and not math.isfinite(value):
            reasons[path] = f"{value} is not a number" + (
                " (IoU of two empty masks is undefined)" if path.endswith("iou") else "")
            return None
        return value
    out = clean(report, "")
    if reasons:
        out["null_reasons"] = reasons
    return out
