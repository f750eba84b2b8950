"""Figures the notebooks share: image grids, the task grid, loss curves, sweeps, FiLM parameter maps."""
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.text import Text

from filmmtl.data import load_style
from filmmtl.backbone import RESIDUAL_PAIRS, SKIP_TARGETS
from filmmtl.tasks import MIXES, TASKS, job_target, make_input


SAVE_DPI = 100  # Session.save_figure's
DISPLAY_WIDTH = 900  # CSS pixels: about the output width of a Jupyter notebook on a laptop screen
MIN_POINTS = 8  # the smallest text a reader can read without zooming


def displayed_text_sizes(fig, dpi=SAVE_DPI, display_width=DISPLAY_WIDTH):
    """[(points as a reader sees them, text)] for every visible text of ``fig``, saved at ``dpi`` (tight
    box) and shown at its natural size, or shrunk to ``display_width`` CSS pixels when wider."""
    fig.canvas.draw()
    box = fig.get_tightbbox(fig.canvas.get_renderer())
    shrink = min(1.0, display_width / (box.width * dpi)) if box.width else 1.0  # PNG pixels shown as CSS pixels
    shown = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and t.get_figure() is fig]
    return [(t.get_fontsize() * dpi / 96 * shrink, t.get_text()) for t in shown]


def check_readable(fig, name="this figure"):
    """Refuse a figure whose smallest text would display under MIN_POINTS: name it and say how to fix it."""
    sizes = displayed_text_sizes(fig)
    if sizes:
        points, text = min(sizes)
        if points < MIN_POINTS:
            raise ValueError(f"{name}: the text {text[:40]!r} would display at {points:.1f} pt (< {MIN_POINTS} pt) "
                             f"at {DISPLAY_WIDTH} px wide; split the figure or enlarge that text")


def to_numpy(image):
    return image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def image_grid(rows, row_titles=None, col_titles=None, title=None, scale=1.6):
    """Rows of images: ``rows`` is a list of (N, 3, H, W) tensors (or None for a blank panel)."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows if r is not None)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(scale * n_cols, scale * n_rows), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            if row is not None and c < len(row) and row[c] is not None:
                ax.imshow(to_numpy(row[c]))
            else:
                ax.axis("off")
            if col_titles and r == 0 and c < len(col_titles):
                ax.set_title(col_titles[c], fontsize=8)
        if row_titles:  # horizontal: a long title then widens the figure instead of running into its neighbours
            axes[r, 0].set_ylabel(row_titles[r], fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def image_row(images, titles, title=None):
    return image_grid([images], col_titles=titles, title=title)


def task_grid(images, masks, space, mixes=(), stylise=None, seed=0):
    """(input, target) of every task and mix for a few images: one row per task or mix, a column pair per
    image.

    Style tasks have no target image: their row shows the painting whose statistics the output must take.
    Mixes with a style part need the network's own style output (``stylise(key, images)``); without it
    their teacher panel stays blank.
    """
    g = torch.Generator().manual_seed(seed)
    rows, titles = [], []
    for job in list(space.keys) + list(mixes):
        inputs, _ = make_input(job.split("+"), images, g)
        if job in TASKS and TASKS[job].style:
            painting = load_style(TASKS[job].style, size=images.shape[-1])[:, :images.shape[-2], :images.shape[-1]]
            target, what = painting.expand(len(images), -1, -1, -1), "target: its painting"
        else:
            target = job_target(job, images, masks, stylise)
            what = "target: method 3's teacher" if job in MIXES else "target"
        rows.append([panel for i in range(len(images)) for panel in (inputs[i], None if target is None else target[i])])
        titles.append(job.replace("+", " +\n") + f"\n({what})")
    return image_grid(rows, row_titles=titles, col_titles=["input", "target"] * len(images), scale=1.3)


def loss_curves(history, window=50):
    """Training loss per job (moving average) from a Trainer's history."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    jobs = sorted({h["job"] for h in history if "loss" in h})
    for job in jobs:
        steps = np.array([h["step"] for h in history if h["job"] == job and "loss" in h])
        values = np.array([h["loss"] for h in history if h["job"] == job and "loss" in h])
        if len(values) >= window:
            values = np.convolve(values, np.ones(window) / window, mode="valid")
            steps = steps[window - 1:]
        ax.plot(steps, values, label=job)
    ax.set_yscale("log"), ax.set_xlabel("step"), ax.set_ylabel("loss (moving average)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: it hides no curve
    fig.tight_layout()
    return fig


def sweep_grid(sweeps, strengths):
    """Rows of strength sweeps ({job: (S, B, 3, H, W)}), first image of each, like the paper's Fig. 5."""
    rows = [s[:, 0] for s in sweeps.values()]
    return image_grid(rows, row_titles=list(sweeps), col_titles=[f"strength {s:g}" for s in strengths])


def dial_fractions(sweep):
    """How far along the way each strength has moved the output: RMS distance to the c = 0 output over the
    RMS distance between the c = 0 and c = 1 outputs (0 at the start, 1 at the task)."""
    to_start = [float((o - sweep[0]).square().mean()) for o in sweep]
    return [(d / to_start[-1]) ** 0.5 if to_start[-1] > 0 else 0.0 for d in to_start]


def dial_curves(sweeps, strengths):
    """Each task's dial: how far its output has moved at each strength, against the straight line that
    FiLM's parameters follow (the generator is linear in c)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="gamma, beta (linear in c)")
    for job, sweep in sweeps.items():
        ax.plot(strengths, dial_fractions(sweep), marker="o", label=job)
    ax.set_xlabel("strength $c_k$")
    ax.set_ylabel("share of the way from the c = 0 output\nto the c = 1 output (RMS)")
    ax.set_title("The dial is not linear in its output")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def film_map(model, vectors):
    """FiLM parameters (gamma and beta of all layers) of each labelled task vector, projected on their
    two principal directions (PCA)."""
    labels = list(vectors)
    with torch.no_grad():
        gamma, beta = model.film(torch.stack([vectors[k] for k in labels]))
    points = torch.cat([gamma, beta], 1).double().cpu()
    centred = points - points.mean(0)
    _, singular, v = torch.linalg.svd(centred, full_matrices=False)
    share = (singular.square() / singular.square().sum()).tolist()
    xy = (centred @ v[:2].T).numpy()
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    ax.scatter(xy[:, 0], xy[:, 1])
    for (x, y), label in zip(xy, labels):
        ax.annotate(label, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"principal direction 1 ({share[0]:.0%} of the variance)")
    ax.set_ylabel(f"principal direction 2 ({share[1]:.0%})")
    ax.set_title(f"FiLM parameters per task vector (PCA). The plane holds {share[0] + share[1]:.0%} of the "
                 "variance:\ndistances off it are not drawn, so two points may look closer than they are", fontsize=9)
    fig.tight_layout()
    return fig


def output_head(backbone):
    """What the last box computes, in words, with every symbol defined."""
    if not backbone.head.input_skip:
        return "output = the last convolution's 3 channels"
    correction = "std(x) r" if backbone.head.output_scale == "std" else "r"
    if not backbone.head.output_gate:
        return f"output = x + {correction}   (r: the last convolution's 3 channels, a correction of the input x)"
    return (f"output = a (x + {correction}) + (1 - a) d   (the last convolution's 7 channels: r a correction of\n"
            "the input x, d a direct output, a = sigmoid(z) a per-pixel gate; std(x): each input channel's spread)")


def draw_layers(ax, convs, film_layers):
    """One box per convolution (height = resolution, label = kernel / stride / channels), a red FiLM feed
    under each modulated layer; returns the boxes' centres."""
    from matplotlib.patches import FancyArrowPatch, Rectangle
    scale, centres = 1.0, []
    for i, layer in enumerate(convs):
        conv, x = layer.conv, float(i)
        scale = scale * (2 if layer.upsample else 1) / conv.stride[0]
        height = 1.6 * scale
        ax.add_patch(Rectangle((x, 1.5 - height / 2), 0.7, height, facecolor="0.85" if i == len(convs) - 1 else "C0",
                               alpha=0.9, edgecolor="k"))
        label = f"{conv.kernel_size[0]}" + (f"/{conv.stride[0]}" if conv.stride[0] > 1 else "") \
            + ("\nup" if layer.upsample else "") + f"\n{conv.out_channels}"
        ax.text(x + 0.35, 1.5 + height / 2 + 0.08, label, ha="center", va="bottom", fontsize=8)
        if i in film_layers:
            ax.plot(x + 0.35, 0.35, "o", color="C3", ms=7)
            ax.add_patch(FancyArrowPatch((x + 0.35, 0.42), (x + 0.35, 1.5 - height / 2), arrowstyle="-|>",
                                         mutation_scale=8, color="C3", lw=0.8))
        centres.append(x + 0.35)
    return centres


def draw_skips(ax, model, backbone, centres):
    """Each residual block's shortcut, and each feature skip (with its FiLM site when gated); returns the
    gated skips."""
    for first, second in RESIDUAL_PAIRS:
        ax.annotate("", (centres[second] + 0.45, 2.25), (centres[first] - 0.45, 2.25),
                    arrowprops=dict(arrowstyle="-|>", connectionstyle="arc3,rad=-0.5", color="0.4", lw=0.8))
    gated = set(getattr(model, "skip_sites", {}).values())
    for source in getattr(backbone, "feature_skips", ()):
        start, end = centres[source] + 0.3, centres[SKIP_TARGETS[source]] + 0.3
        ax.annotate("", (end, 3.35), (start, 3.35),
                    arrowprops=dict(arrowstyle="-|>", connectionstyle="arc3,rad=-0.2", color="C2", lw=1))
        if source in gated:  # the skip's own FiLM site, made by the generator like the layers'
            ax.text((start + end) / 2, 3.45,
                    "feature skip with its own FiLM site:\ngamma * h + beta (gamma starts at 0)",
                    ha="center", va="bottom", fontsize=8, color="C3")
    return gated


def network_diagram(model, name=None):
    """The backbone drawn from ``model`` itself: one box per convolution, residual blocks bracketed, and
    each layer whose instance norm is modulated by FiLM marked and fed by the generator ``c -> (gamma,
    beta)`` drawn underneath. The title counts the FiLM sites of this very model, after ``name`` (its class
    by default)."""
    backbone = model.backbone if hasattr(model, "backbone") else model
    film_layers = set(getattr(model, "film_layers", ()))
    convs = list(backbone.convs) + [backbone.last]
    fig, ax = plt.subplots(figsize=(8.6, 4.4 if backbone.feature_skips else 3.4))
    centres = draw_layers(ax, convs, film_layers)
    gated = draw_skips(ax, model, backbone, centres)
    if film_layers:
        ax.plot([centres[min(film_layers)], centres[max(film_layers)]], [0.35, 0.35], color="C3", lw=2)
        ax.text(centres[0] - 0.6, 0.35, "c -> Linear ->\n(gamma, beta)", ha="right", va="center", fontsize=8,
                color="C3")
    ax.text(centres[-1] + 0.6, 1.5, "output", ha="left", va="center", fontsize=8)
    ax.text(centres[0] - 0.6, 1.5, "image x", ha="right", va="center", fontsize=8)
    ax.text(centres[0] - 0.6, -0.35, output_head(backbone), ha="left", va="top", fontsize=8)
    sites = len(film_layers) + len(gated)
    ax.set_title(f"{name or type(model).__name__}: {len(convs)} convolutions, {sites} FiLM sites (red)\n"
                 "box height = resolution; labels: kernel/stride, channels", fontsize=9)
    ax.set_xlim(centres[0] - 2.6, centres[-1] + 1.9), ax.set_ylim(-0.9, 4.9 if backbone.feature_skips else 3.3)
    ax.axis("off")
    fig.tight_layout()
    return fig


def validation_curves(history, stop=None):
    """Each quality bar's value on the validation images as training went on, its threshold dashed: have
    the scores stopped rising? ``history`` is one run's, or {label: history} to overlay runs; ``stop`` marks
    a step (dotted). None when no run recorded validation (``eval_every=0``)."""
    from filmmtl.evaluate import quality_bars
    runs = history if isinstance(history, dict) else {None: history}
    curves = {label: [(h["step"], quality_bars(h["scores"])) for h in run if h.get("job") == "validation"]
              for label, run in runs.items()}
    curves = {label: points for label, points in curves.items() if points}
    if not curves:
        return None
    # bars by name: runs made before a bar existed (the edge scores) lack it and draw nothing there
    keyed = {label: [(step, {(b["job"], b["bar"]): b for b in bars}) for step, bars in points]
             for label, points in curves.items()}
    first = list({key: bar for points in keyed.values() for _, bars in points for key, bar in bars.items()}.values())
    columns = min(4, len(first))
    rows = -(-len(first) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.9 * rows), squeeze=False)
    for ax in axes.flat[len(first):]:
        ax.axis("off")
    for k, bar in enumerate(first):
        ax = axes.flat[k]
        key = (bar["job"], bar["bar"])
        for label, points in keyed.items():
            ax.plot([step for step, bars in points if key in bars],
                    [bars[key]["value"] for _, bars in points if key in bars],
                    "o-", ms=3, label=label)
        ax.axhline(bar["threshold"], ls="--", color="0.5", lw=1)
        if stop:
            ax.axvline(stop, ls=":", color="C3", lw=1)
        ax.set_title("\n".join([bar["job"]] + textwrap.wrap(bar["bar"], 26)), fontsize=8)
        ax.set_xlabel("step", fontsize=8), ax.tick_params(labelsize=8)
    if None not in curves:
        fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=len(curves), fontsize=8)
        fig.tight_layout(rect=(0, 0.08 / rows, 1, 1))
        return fig
    fig.tight_layout()
    return fig


SIZE_PANELS = (("reconstruction", "psnr", "PSNR (dB)"), ("completion", "psnr", "PSNR (dB)"),
               ("restoration", "psnr", "PSNR (dB)"), ("segmentation", "iou", "IoU"))


def size_vs_quality(sets, highlight="Proposed", panels=SIZE_PANELS):
    """One panel per task with a target: each network's score (with its 95% whiskers) at its number of
    parameters. ``sets`` = {set name: {column: (parameters, evaluate's "intervals")}}; a set is a marker
    (the first filled, the others hollow, each drawn 4% to the right of the one before, so that one network's
    sets stand side by side), a column a colour, ``highlight`` red. One panel per task, since a mean over
    tasks would be ruled by reconstruction's PSNR."""
    columns = list(dict.fromkeys(c for networks in sets.values() for c in networks))
    others = iter(c for k, c in enumerate(plt.rcParams["axes.prop_cycle"].by_key()["color"]) if k != 3)
    colours = {c: "C3" if c == highlight else next(others) for c in columns}
    fig, axes = plt.subplots(2, 2, figsize=(9.6, 7.4))
    for ax, (job, metric, unit) in zip(axes.flat, panels):
        for k, (set_name, networks) in enumerate(sets.items()):
            for column, (size, intervals) in networks.items():
                value, low, high = intervals[job][metric]
                ax.errorbar(size * 1.04 ** k, value, yerr=[[value - low], [high - value]], fmt="o", capsize=3, ms=6,
                            color=colours[column], mfc=colours[column] if k == 0 else "white")
        ax.set_xscale("log")
        ax.set_xlabel("parameters (log)", fontsize=9)
        ax.set_title(f"{job}: {unit}", fontsize=10)
    handles = [plt.Line2D([], [], ls="", marker="o", color=colours[c], label=c) for c in columns]
    handles += [plt.Line2D([], [], ls="", marker="o", color="k", mfc="k" if k == 0 else "white", label=name)
                for k, name in enumerate(sets)] if len(sets) > 1 else []
    rows = 1 if len(handles) <= 8 else 2
    fig.legend(handles=handles, loc="lower center", ncol=-(-len(handles) // rows), fontsize=9)
    fig.tight_layout(rect=(0, 0.045 * rows, 1, 1))
    return fig
