"""Tasks as data: how each makes its input and target from a clean image, its losses and its metrics.

Also the task vectors (``TaskSpace``) and the mixed tasks with the teachers of the paper's method 3.
Registering a new task is one ``register(Task(...))`` call (``colorization`` below is the example), a new
mix one ``register_mix(Mix(...))``; training, scoring and the figures read what the registration says.
"""
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------- segmentation rendered as an image

SEGMENTATION_FILL = (1.0, 0.0, 1.0)  # magenta: every non-object pixel is painted with it
# Rule from image to mask: a pixel is "object" when its RGB distance to the fill colour exceeds this.
SEGMENTATION_THRESHOLD = 0.5
SUBSTITUTE = (0.5, 0.5, 0.5)  # object pixels that would read as fill (rare) are painted grey in targets


def _fill_like(images, colour):
    return torch.tensor(colour, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)


def segmentation_to_mask(images, threshold=SEGMENTATION_THRESHOLD):
    """Object mask (B, H, W) of any image: pixels farther than ``threshold`` from the fill colour."""
    return (images - _fill_like(images, SEGMENTATION_FILL)).norm(dim=1) > threshold


def render_segmentation(images, masks):
    """Keep object pixels (classes 1..20 and VOC's void boundary pixels), paint the rest with the fill.

    Exact on targets: ``segmentation_to_mask(render_segmentation(x, m)) == (m > 0)`` always, because
    object pixels that would read as fill are painted grey.
    """
    objects = (masks > 0).unsqueeze(1)
    kept = torch.where(segmentation_to_mask(images).unsqueeze(1), images, _fill_like(images, SUBSTITUTE))
    return torch.where(objects, kept, _fill_like(images, SEGMENTATION_FILL))


# ---------------------------------------------------------------- degradations (input makers)

def unchanged(images, rng):
    return images, None


def cut_hole(images, rng, area=0.25, fill=0.5):
    """Completion's input: one random axis-aligned rectangle of about ``area`` of the image set to ``fill``.

    Returns the input and the hole (B, 1, H, W), where completion's metrics are also measured.
    """
    b, _, h, w = images.shape
    aspect = torch.empty(b).uniform_(0.8, 1.25, generator=rng)
    hh = (h * (area * aspect) ** 0.5).round().clamp(1, h).long()
    ww = (area * h * w / hh).round().clamp(1, w).long()
    top = (torch.rand(b, generator=rng) * (h - hh + 1)).long()
    left = (torch.rand(b, generator=rng) * (w - ww + 1)).long()
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    hole = ((rows >= top.view(-1, 1, 1)) & (rows < (top + hh).view(-1, 1, 1))
            & (cols >= left.view(-1, 1, 1)) & (cols < (left + ww).view(-1, 1, 1))).unsqueeze(1)
    hole = hole.to(images.device)
    return torch.where(hole, torch.full_like(images, fill), images), hole


def gaussian_noise(images, rng, sigma=0.1):
    """Restoration's default input: additive Gaussian noise (sigma on [0, 1]), clipped to [0, 1]."""
    noise = torch.randn(images.shape, generator=rng).to(images.device)
    return (images + sigma * noise).clamp(0, 1), None


def gaussian_blur(images, rng, sigma=1.5):
    """An alternative restoration input: Gaussian blur (deterministic)."""
    from torchvision.transforms.functional import gaussian_blur as blur
    k = 2 * round(3 * sigma) + 1
    return blur(images, [k, k], [sigma, sigma]), None


def greyscale(images, rng):
    grey = (images * _fill_like(images, (0.299, 0.587, 0.114))).sum(1, keepdim=True)
    return grey.expand_as(images).contiguous(), None


def downsample_x2(images, rng):
    small = F.avg_pool2d(images, 2, ceil_mode=True)
    return F.interpolate(small, size=images.shape[2:], mode="bilinear", align_corners=False), None


RESTORATION_DEGRADATIONS = {"noise": gaussian_noise, "blur": gaussian_blur}


def clean_image(images, masks):
    return images


# ---------------------------------------------------------------- the registry

@dataclass(frozen=True)
class Task:
    """One image task, all it takes to train, score and draw it. ``make_input(images, rng) -> (inputs,
    region or None)``; ``make_target(images, masks) -> targets`` (None for style tasks, which have no target
    image). ``losses``: the main loss, a name of ``objective.TASK_LOSSES`` ("l2", "perceptual") or a callable
    ``loss(output, target)``, then optionally "adversarial". ``metrics``: names of ``evaluate.METRICS`` (and
    "fid") or callables ``metric(output, target)`` giving a value per image."""
    key: str
    name: str
    name_ja: str
    losses: tuple
    metrics: tuple
    make_input: Callable = unchanged
    make_target: Optional[Callable] = clean_image
    style: Optional[str] = None
    paper_id: Optional[int] = None


TASKS = {}


def register(task):
    """Add a task to the registry (its key must be new)."""
    if task.key in TASKS:
        raise ValueError(f"task {task.key!r} is already registered")
    TASKS[task.key] = task
    return task


register(Task("reconstruction", "reconstruction (identity)", "恒等変換", ("l2",), ("psnr", "ssim"),
              paper_id=0))
register(Task("completion", "image completion", "画像補完", ("l2", "adversarial"), ("psnr", "ssim", "hole_psnr"),
              make_input=cut_hole, paper_id=1))
register(Task("restoration", "image restoration (denoising)", "画像修復", ("l2",), ("psnr", "ssim"),
              make_input=gaussian_noise, paper_id=2))
register(Task("segmentation", "semantic segmentation rendered as an image", "セマンティックセグメンテーション",
              ("l2", "adversarial"), ("psnr", "ssim", "iou"),
              make_target=lambda images, masks: render_segmentation(images, masks), paper_id=3))
register(Task("style_gogh", "style transfer: Van Gogh", "スタイル変換（ゴッホ）", ("perceptual",),
              ("gram", "edges", "fid"), make_target=None, style="gogh", paper_id=4))
register(Task("style_munch", "style transfer: Munch", "スタイル変換（ムンク）", ("perceptual",),
              ("gram", "edges", "fid"), make_target=None, style="munch", paper_id=5))
# Outside the paper's set: registering it is all a new task takes.
register(Task("colorization", "colorization", "カラー化", ("l2",), ("psnr", "ssim"), make_input=greyscale))
register(Task("super_resolution", "x2 super-resolution", "超解像", ("l2",), ("psnr", "ssim"),
              make_input=downsample_x2))

PAPER_TASKS = ("reconstruction", "completion", "restoration", "segmentation", "style_gogh", "style_munch")


# ---------------------------------------------------------------- task vectors

def check_strengths(c):
    """The one rule of every task vector, wherever it comes from: finite strengths in [0, 1]."""
    if not torch.isfinite(c).all() or (c < 0).any() or (c > 1).any():
        raise ValueError(f"task strengths must be finite and in [0, 1] (0 = off, 1 = the trained task), got "
                         f"{c.tolist()}; to extrapolate, make FiLM parameters yourself: "
                         "model(x, film=model.generator(c))")
    return c


class TaskSpace:
    """Names <-> task vectors for one ordered task set (reconstruction first, as in the paper).

    A vector has one element per task; reconstruction's element exists (the paper's n counts it) but its
    vector is all zeros, the identity. A task is one-hot, a mix has ones at two tasks, and any element
    in [0, 1] is a strength: ``vector({"style_gogh": 0.5})`` is half of the Gogh style.

    One rule everywhere (names, dicts, tensors, and the networks themselves): strengths lie in [0, 1],
    where the network was trained; extrapolating means making FiLM parameters by hand (see ``models``).
    """

    def __init__(self, keys=PAPER_TASKS):
        keys = tuple(keys)
        unknown = [k for k in keys if k not in TASKS]
        if unknown:
            raise ValueError(f"unknown tasks {unknown}; registered: {sorted(TASKS)}")
        if not keys or keys[0] != "reconstruction" or len(set(keys)) != len(keys):
            raise ValueError(f"a task set starts with 'reconstruction' and names each task once, got {keys}")
        self.keys = keys

    @property
    def n(self):
        return len(self.keys)

    def __iter__(self):
        return iter(self.keys)

    def index(self, key):
        if key not in self.keys:
            raise ValueError(f"task {key!r} is not in this task set {list(self.keys)}")
        return self.keys.index(key)

    def vector(self, spec, strength=1.0):
        """Vector for 'restoration', 'restoration+style_gogh', a {key: strength} dict, or a vector."""
        if isinstance(spec, str):
            spec = {k: strength for k in spec.split("+")}
        if isinstance(spec, dict):
            check_strengths(torch.tensor([float(v) for v in spec.values()]))
            c = torch.zeros(self.n)
            for key, value in spec.items():
                c[self.index(key)] = 0.0 if key == "reconstruction" else float(value)
            return c
        return self.validate(spec)

    def validate(self, c):
        c = torch.as_tensor(c, dtype=torch.float32)
        if c.shape[-1:] != (self.n,) or c.dim() > 2:
            raise ValueError(f"task vectors for {list(self.keys)} have shape ({self.n},) or (B, {self.n}), "
                             f"got {tuple(c.shape)}")
        return check_strengths(c)

    def name(self, c):
        """Readable name of a vector: 'reconstruction', 'style_gogh', 'restoration+segmentation@0.5'."""
        c = self.validate(c)
        parts = [(k, float(v)) for k, v in zip(self.keys, c) if v != 0]
        if not parts:
            return "reconstruction"
        name = "+".join(k for k, _ in parts)
        strengths = {round(v, 3) for _, v in parts}
        return name if strengths == {1.0} else name + "@" + "/".join(f"{v:g}" for _, v in parts)


# ---------------------------------------------------------------- mixed tasks (paper section 3.3)

@dataclass(frozen=True)
class Mix:
    """Two tasks at once. ``rule`` says how method 3's teacher is made:
    'sequential' = the first task's result, then the second task on it (restoration, then style);
    'masking' = the other task's result kept inside the segmentation mask, fill colour outside."""
    parts: tuple
    rule: str

    @property
    def key(self):
        return "+".join(self.parts)


MIX_RULES = ("sequential", "masking")
MIXES = {}


def register_mix(mix):
    """Add a mix of two registered tasks (its key must be new; a masking mix needs segmentation)."""
    unknown = [p for p in mix.parts if p not in TASKS]
    if len(mix.parts) != 2 or unknown:
        raise ValueError(f"a mix is two registered tasks, got {mix.parts}"
                         + (f" ({unknown} unknown: register them first)" if unknown else ""))
    if mix.rule not in MIX_RULES or (mix.rule == "masking" and "segmentation" not in mix.parts):
        raise ValueError(f"mix rule {mix.rule!r}: choose one of {MIX_RULES} ('masking' needs segmentation as a part)")
    if mix.key in MIXES:
        raise ValueError(f"mix {mix.key!r} is already registered")
    MIXES[mix.key] = mix
    return mix


PAPER_MIXES = tuple(register_mix(m) for m in (Mix(("restoration", "style_gogh"), "sequential"),
                                               Mix(("restoration", "segmentation"), "masking"),
                                               Mix(("segmentation", "style_gogh"), "masking")))


def make_input(keys, images, rng):
    """Input for a task or a mix: each part's degradation applied in turn; the last region is kept."""
    region = None
    for key in keys:
        images, part_region = TASKS[key].make_input(images, rng)
        region = part_region if part_region is not None else region
    return images, region


def task_result(key, images, masks, stylise):
    """What task ``key`` should make of ``images``: its target, or for a style task ``stylise(key, images)``
    (the network's own output, as the paper's method 3 uses)."""
    task = TASKS[key]
    return stylise(key, images) if task.style else task.make_target(images, masks)


def mix_teacher(mix, images, masks, stylise):
    """Method 3's teacher image for a mix, from clean images and their masks."""
    first, second = mix.parts
    if mix.rule == "sequential":
        return task_result(second, task_result(first, images, masks, stylise), masks, stylise)
    if mix.rule == "masking":
        if "segmentation" not in mix.parts:
            raise ValueError(f"a masking mix needs segmentation as one part, got {mix.parts}")
        other = second if first == "segmentation" else first
        return render_segmentation(task_result(other, images, masks, stylise), masks)
    raise ValueError(f"unknown mix rule {mix.rule!r}; choose 'sequential' or 'masking'")


def job_target(job, images, masks, stylise=None):
    """The one place that says what a task or mix should make of clean images: the task's target image, or
    the mix's method-3 teacher (whose style parts need ``stylise``). None where there is no such image: a
    style task, or a stylised mix without ``stylise``. Training, evaluation and the figures all use it."""
    if job in MIXES:
        styled = any(TASKS[p].style for p in MIXES[job].parts)
        return mix_teacher(MIXES[job], images, masks, stylise) if stylise or not styled else None
    make = TASKS[job].make_target
    return make(images, masks) if make else None


def method2_loss(mix, output, images, masks, task_loss):
    """Method 2: the mix is trained with the unweighted sum of its parts' losses, L_A + L_B."""
    return sum(task_loss(part, output, images, masks) for part in mix.parts)
