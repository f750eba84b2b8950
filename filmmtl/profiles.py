"""Run profiles as plain data, shared by notebooks and the CLI; override any field by name.

- ``smoke``: tests and CI, seconds per run.
- ``course``: 2 CPU cores: 64x64 images and a half-width network (a quarter of the paper's compute per
  pixel), 2,000 training scenes, 20,000 steps for a network trained from scratch (the compared networks
  of experiments 2 and 3 set their own budget). The FiLM mechanism and every task are the paper's; only
  the scale is smaller.
- ``paper``: the paper's setting for a GPU: 128x128, full width, SBD when $FILMMTL_SBD_ROOT is set, else
  the embedded scenes at the paper's split sizes (8,498 / 2,857).

Every profile anneals the learning rate with a cosine (``lr_schedule``; the paper does not say): at a
constant 1e-3 the course network of experiment 1 collapsed (docs/decisions_and_history.md).
"""
import copy
import os

import torch

from filmmtl.config import BASE, check_fields, number
from filmmtl.models import SKIP_GATED_MODELS
from filmmtl.tasks import PAPER_TASKS

PROFILES = {
    # smoke: fp32 on every machine, so that the tests' numbers do not depend on the CPU they run on.
    "smoke": dict(size=32, width=0.25, n_train=24, n_test=8, batch_size=4, steps=4, eval_every=0, n_val=8,
                  checkpoint_every=2, comparison_draws=0.5, amp=False),
    # amp="auto" (the base's): bf16 autocast on a GPU, fp32 on a CPU. On a CPU bf16 is opt in (amp=True):
    # it is faster on some CPUs and far slower on others, which no test foretells (docs/decisions_and_history.md;
    # `bench/throughput.py --settings` measures it here).
    "course": dict(size=64, width=0.5, n_train=2000, n_test=200, batch_size=8, steps=20000, eval_every=1000,
                   n_val=64, checkpoint_every=500, comparison_draws=1200),
    "paper": dict(),
}


# The paper's network taken literally: none of the project's departures (see docs/decisions_and_history.md).
# Its FiLM generator starts at N(0, 0.01^2) like every network's here (BASE): the paper is silent on
# initialisation, and a config override of None keeps the profile's value.
LITERAL = dict(input_skip=False, feature_skips=[], skip_gate=False, output_scale="none", output_gate=False,
               balance="none")
MIX_KEYS = ["restoration+style_gogh", "restoration+segmentation", "segmentation+style_gogh"]
ONLY = lambda task: {k: float(k == task) for k in PAPER_TASKS}
# Sampling weights of the experiment-1 network (docs/decisions_and_history.md): the tasks that miss their bars and cost
# an L2 step (a quarter of a perceptual one) are drawn more often; the paper draws uniformly.
FAVOUR_L2 = dict(completion=3.0, restoration=3.0, segmentation=2.0)
# The experiment-1 network draws them twice as often again (docs/decisions_and_history.md: at 16,000 steps with the
# gated skip, +0.5 dB in the hole and for restoration, for 1 dB of reconstruction). The compared networks
# of experiments 2 and 3 keep FAVOUR_L2, the same for all of them.
FAVOUR_L2_TWICE = dict(completion=6.0, restoration=6.0, segmentation=3.0)
# The networks of the paper's experiments, as config overrides (``train --recipe NAME``). The mixing
# networks learn the six tasks and the three mixes of experiment 2 (the paper's experiment 2 used four
# tasks; one task set for all keeps the methods and baselines comparable and the CPU budget small).
# Experiments 2 and 3 compare networks like with like: each draws every task equally often. A compared
# network trains ``comparison_draws`` steps per unit of sampling weight (FAVOUR_L2, 1 for the others) over
# the jobs it learns: course 1,200, so a network with the three mixes (weight 14) trains 16,800 steps and one
# with the six tasks only (weight 11) 13,200, and each draws reconstruction about 1,200 times, completion
# 3,600. At 1,200 the proposed network's scores have stopped rising (evaluate.SETTLED_SHARE, notebook 04).
# "proposed_compared" is the proposed network at that budget. Piggyback's base networks (one task each)
# train as many steps as a six-task network, all on their task.
COMPARED = "comparison"
COMPARISON = dict(steps=COMPARED, task_weights=FAVOUR_L2)
# The same comparison under experiment 1's design and recipe ("one story", recipes named NAME_design):
# each network draws every task as often as the experiment-1 network does (``steps="as_proposed"``), with its
# loss (no adversarial term, the hole weighted 6x, the styles' content 16x), its noisy reconstruction
# samples, its sampling weights and its feature skip from encoder layer 0, gated by the task through each
# network's own conditioning where it has a task input (``skip_gate``; Single and SharedEnc own a network
# per task, and Piggyback's bases one task each, so their skips are ungated).
AS_PROPOSED = "as_proposed"
DESIGN_RECIPE = dict(feature_skips=[0], adversarial_weight=0.0, hole_weight=6.0, content_scale=16.0,
                     identity_noise=0.5, task_weights=FAVOUR_L2_TWICE, steps=AS_PROPOSED)
RECIPES = {
    # Experiment 1's network: the paper's loss without the adversarial term of completion and segmentation
    # (docs/decisions_and_history.md: at 8,000 steps it cost every task's score); the compared networks keep it. And a
    # feature skip from encoder layer 0 with a FiLM site of its own (``skip_gate``; FiLM networks only, so
    # the compared networks keep the common backbone): restoration +2.0 -> +5.6 dB. And half of its
    # reconstruction samples noisy (``identity_noise``), so that c = 0 leaves a noisy input as it is:
    # restoration slider 0.46 -> 0.55. And completion's hole weighted 6x in its L2 (``hole_weight``), at
    # 20,000 course steps: hole +2.85 -> +3.02 dB (one seed; restoration +5.54 -> +5.47). docs/decisions_and_history.md
    # has all three. And the styles' content term 16x (``content_scale``, chosen on validation images:
    # docs/validation_and_intervals.md), so that a style keeps the scene's outlines.
    "proposed": dict(method=3, mixes=MIX_KEYS, task_weights=FAVOUR_L2_TWICE, adversarial_weight=0.0,
                     feature_skips=[0], skip_gate=True, identity_noise=0.5, hole_weight=6.0, content_scale=16.0),
    "proposed_literal": dict(method=3, mixes=MIX_KEYS, **LITERAL),
    "proposed_compared": dict(method=3, mixes=MIX_KEYS, **COMPARISON),
    "method1": dict(method=1, mixes=MIX_KEYS, **COMPARISON),
    "method2": dict(method=2, mixes=MIX_KEYS, **COMPARISON),
    "encin": dict(model="encin", method=3, mixes=MIX_KEYS, **COMPARISON),
    "sgn": dict(model="sgn", method=3, mixes=MIX_KEYS, **COMPARISON),
    "sgn_bias": dict(model="sgn_bias", method=3, mixes=MIX_KEYS, **COMPARISON),
    "single": dict(model="single", **COMPARISON),
    "sharedenc": dict(model="sharedenc", **COMPARISON),
    "base_completion": dict(model="johnson", steps=COMPARED, task_weights=ONLY("completion")),
    "base_segmentation": dict(model="johnson", steps=COMPARED, task_weights=ONLY("segmentation")),
    "piggyback1": dict(model="piggyback", base_checkpoint="base_completion", **COMPARISON),
    "piggyback2": dict(model="piggyback", base_checkpoint="base_segmentation", **COMPARISON),
}

def _design(name, **extra):
    return {**RECIPES[name], **DESIGN_RECIPE, **extra}


GATED = dict(skip_gate=True)
RECIPES.update({
    "method1_design": _design("method1", **GATED), "method2_design": _design("method2", **GATED),
    "encin_design": _design("encin", **GATED), "sgn_design": _design("sgn", **GATED),
    "sgn_bias_design": _design("sgn_bias", **GATED), "single_design": _design("single"),
    "sharedenc_design": _design("sharedenc"),
    # One task each (reconstruction is never drawn, so no noisy reconstruction samples).
    "base_completion_design": _design("base_completion", task_weights=ONLY("completion"), identity_noise=0.0),
    "base_segmentation_design": _design("base_segmentation", task_weights=ONLY("segmentation"), identity_noise=0.0),
    "piggyback1_design": _design("piggyback1", base_checkpoint="base_completion_design", **GATED),
    "piggyback2_design": _design("piggyback2", base_checkpoint="base_segmentation_design", **GATED),
})


def training_jobs(config):
    """The jobs a run draws from: its tasks, plus its mixes under methods 2 and 3 (method 1 mixes only at
    inference)."""
    return list(config["tasks"]) + (list(config["mixes"]) if config["method"] in (2, 3) else [])


def job_draws(config):
    """How often a run draws each of its jobs, in expectation: steps x the job's share of the sampling weights."""
    weights = config["task_weights"] or {}
    total = sum(weights.get(job, 1.0) for job in training_jobs(config))
    return {job: config["steps"] * weights.get(job, 1.0) / total for job in training_jobs(config)}


def comparison_steps(config):
    """Steps of a compared network: ``comparison_draws`` per unit of FAVOUR_L2 sampling weight over the jobs
    it learns, so that every compared network draws each task equally often (``job_draws``)."""
    return max(1, round(config["comparison_draws"] * sum(FAVOUR_L2.get(job, 1.0) for job in training_jobs(config))))


def steps_as_proposed(config):
    """Steps that draw each task as often as the experiment-1 network (recipe ``proposed``) does in
    ``config["steps"]``: the same steps with the three mixes, 18/21 of them without."""
    def weight(jobs):
        return sum(FAVOUR_L2_TWICE.get(job, 1.0) for job in jobs)
    proposed = {**config, **RECIPES["proposed"]}
    return max(1, round(config["steps"] * weight(training_jobs(config)) / weight(training_jobs(proposed))))


def recipe_overrides(recipe, config):
    """A recipe's overrides for a resolved config (``steps="comparison"`` -> ``comparison_steps``,
    ``steps="as_proposed"`` -> ``steps_as_proposed``)."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)}")
    overrides = dict(RECIPES[recipe])
    jobs = {k: overrides.get(k, config[k]) for k in ("tasks", "mixes", "method")}
    if overrides.get("steps") == COMPARED:
        overrides["steps"] = comparison_steps({**jobs, "comparison_draws": config["comparison_draws"]})
    elif overrides.get("steps") == AS_PROPOSED:
        overrides["steps"] = steps_as_proposed({**jobs, "steps": config["steps"]})
    return overrides


def resolve_profile(name="auto", train_here=True):
    """The one place 'auto' is resolved: $FILMMTL_PROFILE when set (nbval sets 'smoke'); else, for a run that
    trains here, 'paper' on a GPU and 'course' on a CPU; for one that loads the shipped networks (a
    notebook without ``retrain``), 'course' on any device, the profile they ship for."""
    if name == "auto":
        trains_big = train_here and torch.cuda.is_available()
        name = os.environ.get("FILMMTL_PROFILE") or ("paper" if trains_big else "course")
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose 'auto' or one of {sorted(PROFILES)}")
    return name


def make_config(profile="auto", **overrides):
    """The profile's settings with ``overrides`` applied (None = keep); unknown names are an error."""
    name = resolve_profile(profile)
    unknown = sorted(set(overrides) - set(BASE))  # "profile" is the argument, not a field to override
    if unknown:
        raise ValueError(f"unknown config fields {unknown}; known: {sorted(BASE)}")
    config = copy.deepcopy(BASE)
    config.update(PROFILES[name])
    config.update({k: v for k, v in overrides.items() if v is not None})
    config["profile"] = name
    if config["data"] == "scenes" and name == "paper" and os.environ.get("FILMMTL_SBD_ROOT"):
        config["data"] = "sbd"
    return validate_config(config)


def validate_config(config):
    """Check every field (type, range, finite) before any work starts; the error names the field and what
    it accepts (``config.FIELDS``), then the rules that tie fields together. Returns the config."""
    check_fields(config, PROFILES)
    if config["balance"] == "grad_norm" and config["mixed_batch"]:
        raise ValueError("balance='grad_norm' scales each step's gradient by its job's, so it needs one job per "
                         "step: set mixed_batch=False, or balance='none'")
    if config["skip_gate"] and (config["model"] not in SKIP_GATED_MODELS or not config["feature_skips"]):
        raise ValueError("skip_gate=True lets the task gate each feature skip: it needs a network with a task "
                         f"input (model one of {list(SKIP_GATED_MODELS)}, got {config['model']!r}; a network per "
                         f"task owns its skip already) and feature_skips such as [0] (got {config['feature_skips']!r})")
    if config["identity_noise"] and "reconstruction" not in config["tasks"]:
        raise ValueError("identity_noise makes some reconstruction samples noisy: it needs 'reconstruction' in "
                         f"tasks (got {config['tasks']!r}); set identity_noise=0")
    jobs = set(training_jobs(config))
    weights = config["task_weights"] or {}
    unknown = sorted(set(weights) - jobs)
    if unknown:
        raise ValueError(f"task_weights names {unknown}, which this run does not train; its jobs are {sorted(jobs)}")
    bad = {k: v for k, v in weights.items() if not number(0)[0](v)}
    if bad or (weights and not any(weights.get(j, 1.0) > 0 for j in jobs)):
        raise ValueError(f"task_weights must be finite numbers >= 0 with at least one job above 0; got {weights}")
    return config
