"""A live task-vector explorer: one slider per task and one for a mix, the output and its FiLM parameters.

Core widgets only (FloatSlider, Dropdown, FileUpload, Image, HBox/VBox), so it runs in JupyterLab and
Colab. Each change re-runs the network once and writes PNG bytes into fixed-size ``widgets.Image``
(no matplotlib redraw); sliders use ``continuous_update=False``. Without a frontend (papermill, nbval;
``$FILMMTL_HEADLESS``) the notebook draws ``static_grid`` instead: the same ``render`` over fixed vectors.
"""
import io
import os
import time

import ipywidgets as widgets
import numpy as np
import torch
from PIL import Image

from filmmtl.data import centre_square, read_image
from filmmtl.evaluate import job_inputs
from filmmtl.plots import image_grid
from filmmtl.tasks import TASKS, unchanged


def headless():
    return os.environ.get("FILMMTL_HEADLESS") == "1"


def png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def image_png(image, display_size):
    array = (image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    return png(np.asarray(Image.fromarray(array).resize((display_size, display_size), Image.NEAREST)))


def _diverging(t):
    """[-1, 1] -> RGB bytes: blue below 0, white at 0, red above."""
    t = np.clip(t, -1, 1)
    return (np.stack([1 + np.minimum(t, 0), 1 - np.abs(t), 1 - np.maximum(t, 0)], -1) * 255).astype(np.uint8)


def film_png(sites, cell=4, row=12):
    """Each FiLM site's gamma (left) and beta (right) as one labelled row, one cell per channel, coloured by
    the distance from the site's identity (gamma - 1 and beta; a gated skip's gamma from 0, where it
    starts shut): white there, red above, blue below, full colour at 1 away; a colour bar below.
    ``sites``: {site: (gamma, beta)} for one task vector, as ``model.film_by_layer(c)`` gives them."""
    from PIL import ImageDraw
    label_width, gap = 52, 12
    channels = max(g.shape[-1] for g, _ in sites.values())
    panel = channels * cell
    height = 14 + row * len(sites) + 34
    canvas = Image.new("RGB", (label_width + 2 * panel + gap, height), "white")
    draw = ImageDraw.Draw(canvas)
    for x, title in ((label_width, "gamma - identity"), (label_width + panel + gap, "beta")):
        draw.text((x, 1), title, fill="black")
    for k, (site, (gamma, beta)) in enumerate(sites.items()):
        y = 14 + k * row
        draw.text((2, y), f"skip {site[4:]}" if isinstance(site, str) else f"layer {site}", fill="black")
        shut = isinstance(site, str)  # a gated skip's identity is 0 (shut), every other site's gamma is 1
        for x, values in ((label_width, gamma - (0.0 if shut else 1.0)), (label_width + panel + gap, beta)):
            v = values.detach().flatten().float().cpu().numpy()
            strip = np.kron(_diverging(v)[None], np.ones((row - 2, cell, 1), np.uint8))
            canvas.paste(Image.fromarray(strip), (x, y))
    bar = np.kron(_diverging(np.linspace(-1, 1, panel))[None], np.ones((8, 1, 1), np.uint8))
    y = height - 30
    canvas.paste(Image.fromarray(bar), (label_width, y))
    for fraction, text in ((0.0, "-1"), (0.5, "0 = identity"), (1.0, "+1")):
        draw.text((label_width + fraction * (panel - 1) - (fraction * 6 * len(text)), y + 10), text, fill="black")
    legend = "one cell per channel; white: gamma 1,\nbeta 0 (a skip's gamma: 0, shut)"
    draw.text((label_width + panel + gap, y), legend, fill="black")
    return png(np.asarray(canvas))


def upload_to_tensor(upload_value, size):
    """The first uploaded file of a FileUpload value as a (3, size, size) tensor in [0, 1]. ipywidgets 8
    gives a tuple of dicts with a memoryview ``content``; ipywidgets 7 (Colab's) a dict {file name: dict}
    with bytes ``content``."""
    if not upload_value:
        return None
    if isinstance(upload_value, dict):
        name, file = next(iter(upload_value.items()))
    else:
        file = upload_value[0]
        name = file.get("name", "the upload")
    return centre_square(read_image(io.BytesIO(bytes(file["content"])), name), size)


CLEAN = "clean image"


class Explorer:
    """Sliders -> task vector -> output image and FiLM parameters, for chosen or uploaded images.

    The *input* menu degrades the image the way a task's training inputs were degraded (a hole for
    completion, noise for restoration; seeded, so the same image always gets the same hole); moving the
    slider of such a task selects its input while the menu says "clean image". *reset* returns every
    control to the start. The label under the images reports how long the last output took.
    """

    def __init__(self, model, space, images, mixes=(), display_size=192):
        if len(images) == 0:
            raise ValueError("Explorer got 0 images; give it at least one (such as session.test_images(4)), "
                             "then upload your own in the widget")
        self.model, self.space, self.images = model.eval(), space, images
        self.display_size = display_size
        # labels as wide as the longest ("segmentation", "style_munch"): the default width cuts them
        label = lambda: dict(style={"description_width": "110px"}, layout=widgets.Layout(width="340px"))
        self.sliders = {k: widgets.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description=k,
                                               continuous_update=False, **label()) for k in space.keys[1:]}
        self.mix = widgets.Dropdown(options=["(no mix)"] + list(mixes), description="mix", **label())
        self.mix_strength = widgets.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description="mix strength",
                                                continuous_update=False, **label())
        self.image_choice = widgets.Dropdown(options=list(range(len(images))), description="test image", **label())
        degraded = [k for k in space.keys if TASKS[k].make_input is not unchanged]
        self.degradation = widgets.Dropdown(options=[CLEAN] + degraded, description="input", **label())
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="your image")
        self.reset_button = widgets.Button(description="reset", tooltip="all strengths 0, clean test image 0")
        self.input_view = widgets.Image(format="png", width=display_size, height=display_size)
        self.output_view = widgets.Image(format="png", width=display_size, height=display_size)
        self.film_view = widgets.Image(format="png")
        self.timing = widgets.Label()
        self.upload_status = widgets.Label()  # why an upload was not used, in the widget itself
        # DOM classes by which a browser test (tests/test_browser.py) finds the views and sliders.
        for name, w in [("input", self.input_view), ("output", self.output_view), ("timing", self.timing),
                        ("reset", self.reset_button), *[(f"slider-{k}", v) for k, v in self.sliders.items()]]:
            w.add_class(f"filmmtl-{name}")
        self.uploaded = None
        self.seconds = None  # how long the last output took
        self.holding = False  # True while reset sets many widgets: one update at the end
        for key, slider in self.sliders.items():
            slider.observe(lambda change, key=key: self.on_slider(key, change), names="value")
        for w in [self.mix, self.mix_strength, self.image_choice, self.degradation]:
            w.observe(self.update, names="value")
        self.upload.observe(self.on_upload, names="value")
        self.reset_button.on_click(self.reset)
        self.update()

    def vector(self):
        """The task vector the widgets describe: slider strengths, plus the mix's tasks at its strength."""
        c = torch.tensor([0.0] + [s.value for s in self.sliders.values()])
        if self.mix.value != "(no mix)":
            c = torch.maximum(c, self.mix_strength.value * self.space.vector(self.mix.value))
        return c

    def current_image(self):
        return self.uploaded if self.uploaded is not None else self.images[self.image_choice.value]

    def network_input(self):
        """The current image, degraded as the *input* menu says (what the network receives)."""
        image = self.current_image()
        if self.degradation.value == CLEAN:
            return image
        return job_inputs(self.degradation.value, image[None])[0][0]

    @torch.no_grad()
    def render(self, image, c):
        """The network's output for one image and one task vector (what every view shows)."""
        device = next(self.model.parameters()).device
        return self.model(image[None].to(device), c.to(device))[0].float().clamp(0, 1).cpu()

    def on_slider(self, key, change):
        if change["new"] > 0 and self.degradation.value == CLEAN and key in self.degradation.options:
            self.degradation.value = key  # its own observer updates the views
        else:
            self.update()

    def on_upload(self, change):
        try:
            self.uploaded = upload_to_tensor(change["new"], self.images.shape[-1])
        except ValueError as err:  # not an image: say so where the user looks, keep the current picture
            self.upload_status.value = str(err)
            return
        self.upload_status.value = ""
        self.update()

    def reset(self, button=None):
        self.holding = True
        for slider in [*self.sliders.values(), self.mix_strength]:
            slider.value = 0.0
        self.mix.value, self.image_choice.value, self.degradation.value = "(no mix)", 0, CLEAN
        self.uploaded = None
        self.holding = False
        self.update()

    def update(self, change=None):
        if self.holding:
            return
        image, c = self.network_input(), self.vector()
        start = time.perf_counter()
        output = self.render(image, c)
        self.seconds = time.perf_counter() - start
        self.input_view.value = image_png(image, self.display_size)
        self.output_view.value = image_png(output, self.display_size)
        self.timing.value = f"output in {1000 * self.seconds:.0f} ms"
        if hasattr(self.model, "film_by_layer"):
            with torch.no_grad():
                sites = {site: (g[0], b[0]) for site, (g, b) in self.model.film_by_layer(c).items()}
            self.film_view.value = film_png(sites)

    def widget(self):
        controls = widgets.VBox([self.image_choice, self.upload, self.upload_status, self.degradation,
                                 *self.sliders.values(), self.mix, self.mix_strength, self.reset_button])
        titled = lambda title, view: widgets.VBox([widgets.Label(title, layout=widgets.Layout(width=view.width + "px")),
                                                   view])
        views = widgets.VBox([widgets.HBox([titled("the network's input", self.input_view),
                                            titled("output", self.output_view)]),
                              self.timing,
                              widgets.Label("FiLM parameters of this task vector, one row per site"), self.film_view])
        return widgets.HBox([controls, views])

    def static_grid(self, image_index=0, strengths=(0.0, 0.25, 0.5, 0.75, 1.0), jobs=None):
        """What the sliders would show, drawn once: one row per task or mix (on that job's own degraded
        input, as the *input* menu selects it), one column per strength."""
        jobs = jobs or list(self.space.keys[1:]) + [m for m in self.mix.options if m != "(no mix)"]
        image = self.images[image_index]
        rows = []
        for job in jobs:
            degraded = job_inputs(job, image[None])[0][0]
            rows.append(torch.stack([self.render(degraded, s * self.space.vector(job)) for s in strengths]))
        return image_grid(rows, row_titles=jobs, col_titles=[f"strength {s:g}" for s in strengths])
