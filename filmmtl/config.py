"""Every config field in one table: its default, how it is checked, what kind of field it is, and the
value that a checkpoint made before the field existed implies.

Configs stay plain dicts (they travel as JSON inside every checkpoint). From this table come the base
config (``BASE``, which ``profiles`` overrides per profile), the per-field checks, the fields that a load
(``ARCHITECTURE``) and a resume (all but ``RESUMABLE``) compare, the upgrade of older checkpoints, and
the arguments a network is built with (``model_options``). Adding a field is one line here; rules that
tie several fields together live in ``profiles.validate_config``.
"""
import math
import os
from dataclasses import dataclass

from filmmtl.losses import FEATURE_NETS
from filmmtl.backbone import OUTPUT_SCALES, SKIP_TARGETS
from filmmtl.models import FILM_MODELS, MODEL_NAMES, SKIP_GATED_MODELS
from filmmtl.tasks import MIXES, PAPER_TASKS, TASKS

MAX_SEED = 2**63 - 1  # the largest seed every generator used (torch's, numpy's) takes
NEW = object()  # a field the first shipped networks already had: nothing to fill in for old checkpoints


def number(low=None, high=None, integer=False, optional=False, low_open=False):
    """A check for a finite number (an int when ``integer``; never a bool) in [low, high]."""
    def check(v):
        if v is None:
            return optional
        kind = int if integer else (int, float)
        if isinstance(v, bool) or not isinstance(v, kind) or not math.isfinite(v):
            return False
        return (low is None or (v > low if low_open else v >= low)) and (high is None or v <= high)
    parts = ["an integer" if integer else "a finite number"]
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"<= {high}" if isinstance(high, int) else f"<= {high:g}")
    return check, " ".join(parts) + (" or None" if optional else "")


def one_of(*choices):
    return (lambda v: any(v is c or (type(v) is type(c) and v == c) for c in choices),
            "one of " + ", ".join(map(repr, choices)))


def list_of(allowed, what):
    return (lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, (str, int)) and x in allowed for x in v)
            and len(set(v)) == len(v), f"a list of distinct {what} from {sorted(allowed, key=str)}")


@dataclass(frozen=True)
class Field:
    """One config field. ``kind``: "architecture" (a loaded checkpoint must agree), "training" (a resumed
    run must agree), "runtime" (where and how often a run works: a resumed run may change it), or "derived"
    (only its effect, another field, is compared). ``model``: passed to ``models.build`` for every network
    ("all"), for FiLM networks ("film"), or for networks that gate their skips ("gated"). ``before``: the
    value of a checkpoint made before the field existed."""
    default: object
    check: tuple
    kind: str = "training"
    model: str = None
    before: object = NEW


POSITIVE_INT, COUNT = number(1, integer=True), number(1, integer=True, optional=True)
SEED = number(0, MAX_SEED, integer=True)
FIELDS = {
    # what the network is
    "model": Field("proposed", one_of(*MODEL_NAMES), "architecture"),
    "tasks": Field(list(PAPER_TASKS), list_of(TASKS, "task names"), "architecture"),
    "mixes": Field([], list_of(MIXES, "mix names"), "architecture"),
    "method": Field(1, one_of(1, 2, 3), "architecture"),
    "width": Field(1.0, number(0, low_open=True), "architecture", "all"),
    "generator_layers": Field(1, POSITIVE_INT, "architecture", "film"),
    # The output layer and training design chosen by bench/design_study.py (docs/decisions_and_history.md);
    # profiles.LITERAL switches every departure off.
    "input_skip": Field(True, one_of(True, False), "architecture", "all"),
    "feature_skips": Field([], list_of(SKIP_TARGETS, "encoder layers"), "architecture", "all", before=[]),
    "skip_gate": Field(False, one_of(True, False), "architecture", "gated", before=False),
    "output_scale": Field("std", one_of(*OUTPUT_SCALES), "architecture", "all", before="none"),
    "output_gate": Field(True, one_of(True, False), "architecture", "all", before=False),
    "generator_init_std": Field(0.01, number(0, low_open=True, optional=True), model="film", before=None),
    # how it learns
    "balance": Field("grad_norm", one_of("none", "grad_norm"), before="none"),
    "balance_cap": Field(10.0, number(1), before=10.0),
    "max_loss": Field(1e5, number(0, low_open=True), before=1e5),  # the largest loss shipped runs logged: 2,714
    "base_checkpoint": Field(None, (lambda v: v is None or isinstance(v, str), "a path string or None")),
    "identity_noise": Field(0.0, number(0, 1), before=0.0),
    "hole_weight": Field(1.0, number(0, low_open=True), before=1.0),
    "content_scale": Field(1.0, number(0, low_open=True), before=1.0),
    "data": Field("scenes", one_of("scenes", "sbd", "voc")),
    "data_root": Field(None, (lambda v: v is None or isinstance(v, (str, os.PathLike)), "a folder path or None"),
                       "runtime"),
    "size": Field(128, number(16, integer=True)),
    "n_train": Field(None, COUNT),
    "n_test": Field(None, COUNT),
    "data_seed": Field(0, SEED),
    "batch_size": Field(8, POSITIVE_INT),
    "steps": Field(40000, POSITIVE_INT),
    "lr": Field(1e-3, number(0, low_open=True)),
    "lr_schedule": Field("cosine", one_of("constant", "cosine")),
    "seed": Field(0, SEED),
    "task_weights": Field(None, (lambda v: v is None or isinstance(v, dict), "a {job: weight} dict or None")),
    "mixed_batch": Field(False, one_of(True, False)),
    # the authors' related code: 0.996 L2 + 0.004 adversarial for the tasks that have one
    "adversarial_weight": Field(0.004, number(0, 1)),
    "discriminator_lr": Field(2e-4, number(0, low_open=True)),
    "feature_net": Field("auto", one_of(*FEATURE_NETS)),
    # where and how often it works
    "eval_every": Field(2000, number(0, integer=True), "runtime"),
    "n_val": Field(64, POSITIVE_INT, "runtime"),
    "checkpoint_every": Field(2000, POSITIVE_INT, "runtime"),
    "device": Field("auto", (lambda v: isinstance(v, str) and bool(v), "'auto' or a torch device name such as 'cpu'"),
                    "runtime"),
    "amp": Field("auto", one_of("auto", True, False), "runtime"),
    "channels_last": Field("auto", one_of("auto", True, False), "runtime"),
    # a compared network with the mixes (weight 14) trains the paper's 40,000 steps; only the steps it
    # gives a compared recipe are compared
    "comparison_draws": Field(2857, number(0, low_open=True), "derived"),
}
BASE = {name: field.default for name, field in FIELDS.items()}
ARCHITECTURE = tuple(name for name, field in FIELDS.items() if field.kind == "architecture")
RUNTIME = tuple(name for name, field in FIELDS.items() if field.kind == "runtime")
RESUMABLE = RUNTIME + tuple(name for name, field in FIELDS.items() if field.kind == "derived")
ADDED_FIELDS = {name: field.before for name, field in FIELDS.items() if field.before is not NEW}


def check_fields(config, profiles):
    """Each field's own check (type, range, finite), naming the field and what it accepts; ``profile``
    must be one of ``profiles``."""
    checks = {**{name: field.check for name, field in FIELDS.items()}, "profile": one_of(*profiles)}
    for key, (check, accepted) in checks.items():
        if not check(config.get(key)):
            raise ValueError(f"config field {key!r} must be {accepted}; got {config.get(key)!r}")


def upgrade(config):
    """A checkpoint's config with the fields it predates filled in as it was made."""
    return {**ADDED_FIELDS, **config}


def model_options(config):
    """The arguments ``models.build`` takes from a config, for its kind of network."""
    film = config["model"] in FILM_MODELS
    wanted = {"all"} | ({"film"} if film else set()) | ({"gated"} if config["model"] in SKIP_GATED_MODELS else set())
    return {name: config[name] for name, field in FIELDS.items() if field.model in wanted}
