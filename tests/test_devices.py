"""The GPU path on a CPU machine: tensors that behave like CUDA ones are pushed through the plots, the explorer
and the notebook helpers, and a network on another device than its images says so."""
import numpy as np
import pytest
import torch

from filmmtl import plots
from filmmtl.evaluate import job_inputs, run
from filmmtl.explorer import Explorer, film_png, image_png, upload_to_tensor
from filmmtl.models import build
from filmmtl.tasks import TaskSpace


class OnDevice(torch.Tensor):
    """A tensor as a CUDA one behaves for what matters here: NumPy refuses it until ``.cpu()`` is called."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.Tensor.numpy, torch.Tensor.__array__):
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the "
                            "tensor to host memory first.")
        if func is torch.Tensor.cpu:
            return args[0].as_subclass(torch.Tensor).clone()
        return super().__torch_function__(func, types, args, kwargs or {})


def on_device(tensor):
    return tensor.as_subclass(OnDevice)


class DeviceNetwork(torch.nn.Module):
    """A shipped-style network whose outputs and FiLM parameters come back as 'device' tensors."""

    def __init__(self):
        super().__init__()
        self.inner = build("proposed", width=0.25).eval()
        self.n_tasks, self.film_layers = self.inner.n_tasks, self.inner.film_layers
        self.offsets, self.site_channels = self.inner.offsets, self.inner.site_channels

    def film(self, c):
        return tuple(on_device(t) for t in self.inner.film(c))

    def film_by_layer(self, c):
        return {site: tuple(on_device(t) for t in pair) for site, pair in self.inner.film_by_layer(c).items()}

    def forward(self, x, c=None, film=None):
        return on_device(self.inner(x.as_subclass(torch.Tensor), c, film))


def test_the_stand_in_refuses_numpy_as_cuda_does():
    with pytest.raises(TypeError, match="Use Tensor.cpu"):
        on_device(torch.zeros(2)).numpy()
    with pytest.raises(TypeError, match="Use Tensor.cpu"):
        np.asarray(on_device(torch.zeros(2)))
    assert on_device(torch.ones(2)).cpu().numpy().tolist() == [1.0, 1.0]


def test_plots_take_device_tensors():
    model, space = DeviceNetwork(), TaskSpace()
    images = on_device(torch.rand(2, 3, 32, 32))
    plots.image_row(images, ["a", "b"])
    plots.image_grid([[images[0], images[1]], [images[1], None]], row_titles=["x", "y"], col_titles=["p", "q"])
    plots.film_map(model, {k: space.vector(k) for k in space})
    plots.network_diagram(model.inner)


def test_helpers_and_explorer_take_device_tensors():
    model, space = DeviceNetwork(), TaskSpace()
    images = torch.rand(3, 3, 32, 32)
    assert type(run(model, space.vector("restoration"), job_inputs("restoration", images)[0])) is torch.Tensor
    image_png(on_device(images[0]), 64)
    film_png({site: (g[0], b[0]) for site, (g, b) in model.film_by_layer(space.vector("style_gogh")).items()})
    explorer = Explorer(model, space, images)
    explorer.sliders["style_gogh"].value = 1.0
    explorer.update()
    assert explorer.output_view.value and explorer.film_view.value
    explorer.static_grid(jobs=["style_gogh"], strengths=(0.0, 1.0))


def test_images_on_another_device_than_the_network_are_named():
    model = build("proposed", width=0.25).to("meta")
    message = r"images are on cpu but the network is on meta: move them with x.to\('meta'\)"
    with pytest.raises(ValueError, match=message):
        model(torch.rand(1, 3, 32, 32), torch.zeros(6))


def test_an_ipywidgets_7_upload_is_read_with_its_name():
    with pytest.raises(ValueError, match="holiday.txt"):
        upload_to_tensor({"holiday.txt": {"metadata": {"name": "holiday.txt"}, "content": b"not an image"}}, 32)
