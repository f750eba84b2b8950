"""Johnson's encoder-decoder with a hook after each instance norm: the one backbone of every network.

The layer plan (``ENCODER``, ``RESIDUAL_PAIRS``, ``DECODER``: 15 normalised layers) is declared once here
and read by the FiLM network, the baselines, the plots and the config checks. The output head (the
project's parameter-free departures at the output) is a module of its own, ``OutputHead``.
Also the input checks every network runs once, at its ``forward``.
"""
import contextlib
import math
import threading

import torch
import torch.nn as nn
import torch.nn.functional as F

from filmmtl.tasks import check_strengths

# Johnson's layer plan, by normalised layer: three encoder convolutions (the last two halve the
# resolution), five residual blocks of two, two upsampling decoder convolutions; a 16th makes RGB.
ENCODER = (0, 1, 2)
RESIDUAL_PAIRS = ((3, 4), (5, 6), (7, 8), (9, 10), (11, 12))
DECODER = (13, 14)
LAYERS = ENCODER + tuple(i for pair in RESIDUAL_PAIRS for i in pair) + DECODER
# Output channels of the normalised layers at width 1.0.
BASE_CHANNELS = (32, 64, 128) + (128,) * 10 + (64, 32)
MIN_SIZE = 16
# Parameter-free encoder -> decoder skips: encoder layer -> the decoder layer of equal resolution and width.
SKIP_TARGETS = {0: 14, 1: 13}
OUTPUT_SCALES = ("none", "std")
MIN_STD = 0.01  # a flat input channel still gets a (small) correction
GATE_INIT = 2.0  # output_gate starts keeping the input: sigmoid(2) = 0.88


def layer_channels(width=1.0):
    """Channels of the 15 normalised layers for a width multiplier (1.0 = the paper)."""
    if not (isinstance(width, (int, float)) and width > 0 and math.isfinite(width)):
        raise ValueError(f"width must be a positive number (1.0 = the paper's network), got {width!r}")
    return tuple(max(1, round(c * width)) for c in BASE_CHANNELS)


class ValueChecks(threading.local):
    on = True


CHECK_VALUES = ValueChecks()  # per thread: the explorer's callbacks may run beside a training loop


@contextlib.contextmanager
def inputs_checked_upstream():
    """Skip the checks of input *values* (finite pixels, strengths in [0, 1]), which make a GPU wait for
    the host at every forward: for a caller whose inputs were made and checked once, upstream (the
    training loop: ``TaskSpace`` vectors, the package's own images). Shapes, dtypes and devices are still
    checked (they cost no wait)."""
    before, CHECK_VALUES.on = CHECK_VALUES.on, False
    try:
        yield
    finally:
        CHECK_VALUES.on = before


def check_images(x, model=None):
    """Reject what the network cannot take, naming the expected form (and, given the ``model``, its dtype)."""
    if not torch.is_tensor(x):
        raise TypeError(f"images must be a torch.Tensor of shape (B, 3, H, W), got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise TypeError(f"images must be floating point in [0, 1], got dtype {x.dtype}; "
                        "convert uint8 images with x.float() / 255")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W) with 3 RGB channels, got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("got an empty batch (B = 0); pass at least one image")
    if min(x.shape[2:]) < MIN_SIZE:
        raise ValueError(f"images must be at least {MIN_SIZE}x{MIN_SIZE} pixels, got {tuple(x.shape[2:])}")
    weight = next(model.parameters()) if model is not None else x
    if x.device != weight.device:
        raise ValueError(f"images are on {x.device} but the network is on {weight.device}: move them with "
                         f"x.to({str(weight.device)!r}) (or the network with model.to({str(x.device)!r}))")
    dtype = weight.dtype
    if x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"images are {x.dtype} but the network's weights are {dtype}: convert with "
                        f"x.to({dtype}) (or the network with model.to({x.dtype}))")
    if CHECK_VALUES.on and not torch.isfinite(x).all():
        raise ValueError("images contain NaN or infinite values; clean or clamp them first")


def check_task_vectors(c, n_tasks, batch):
    """Return ``c`` as a (batch, n_tasks) float tensor, or raise a clear error."""
    if c is None:
        raise ValueError(f"a task vector c of length {n_tasks} is required (zeros = reconstruction)")
    c = torch.as_tensor(c, dtype=torch.float32)
    if c.dim() == 1:
        c = c.unsqueeze(0).expand(batch, -1)
    if c.dim() != 2 or c.shape[1] != n_tasks:
        raise ValueError(f"task vectors must have shape ({n_tasks},) or (B, {n_tasks}) for this "
                         f"{n_tasks}-task network, got {tuple(c.shape)}")
    if c.shape[0] != batch:
        raise ValueError(f"got {c.shape[0]} task vectors for a batch of {batch} images")
    return check_strengths(c) if CHECK_VALUES.on else c


class ConvLayer(nn.Module):
    """Reflection padding + convolution, after an optional nearest x2 upsampling (Johnson's decoder)."""

    def __init__(self, c_in, c_out, kernel, stride=1, upsample=False):
        super().__init__()
        self.upsample = upsample
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride)

    def forward(self, x):
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(self.pad(x))


class OutputHead(nn.Module):
    """What becomes of the last convolution's output ``out`` given the input ``x``. The paper is silent on
    the output layer; the project's departures, each switchable off (all off = the paper's network taken
    literally, which is exactly blind to each input channel's offset and to the image's contrast: the first
    convolution is linear and the first instance norm removes both; see ``tests/test_models.py``):

    - ``input_skip`` adds the input image to the output, giving back the colour and contrast that instance
      norm discards (without it, reconstruction stalls near 14 dB).
    - ``output_scale="std"`` multiplies the correction by each input channel's standard deviation,
      ``x + std(x) * f(x)``: the network becomes equivariant to changes of contrast a and colour offset b
      (``model(a x + b) = a model(x) + b``), so a correction learned at one contrast fits another.
    - ``output_gate`` (4 more output channels of the last convolution, 10,372 parameters at width 1.0)
      blends, per pixel, that relative output with an absolute one: ``a * (x + s * r) + (1 - a) * d`` with
      ``a = sigmoid(z)`` and ``(r, d, z)`` the last convolution's 3 + 3 + 1 channels. Why: instance norm
      leaves the network no way to know the input's absolute colour, so a target in absolute colours
      (segmentation's magenta background, a painting's palette) cannot be written as a correction of the
      input; with the gate it is painted directly (``a = 0``) while near-identity tasks keep the input.
    """

    def __init__(self, input_skip=True, output_scale="none", output_gate=False):
        super().__init__()
        if output_scale not in OUTPUT_SCALES:
            raise ValueError(f"output_scale must be one of {OUTPUT_SCALES}, got {output_scale!r}")
        if output_scale != "none" and not input_skip:
            raise ValueError("output_scale scales the correction added to the input: it needs input_skip=True")
        if output_gate and not input_skip:
            raise ValueError("output_gate blends the input with an absolute output: it needs input_skip=True")
        self.input_skip, self.output_scale, self.output_gate = input_skip, output_scale, output_gate
        self.channels = 3 + 4 * output_gate  # what the last convolution must make

    def forward(self, out, x):
        if not self.input_skip:
            return out
        correction = out[:, :3]
        if self.output_scale == "std":
            correction = correction * x.std(dim=(2, 3), keepdim=True).clamp_min(MIN_STD)
        if not self.output_gate:
            return x + correction
        keep = torch.sigmoid(out[:, 6:7])
        return keep * (x + correction) + (1 - keep) * out[:, 3:6]


class Backbone(nn.Module):
    """Johnson et al.'s encoder, 5 residual blocks and decoder, with a hook after each instance norm.

    ``forward(x, normalise)`` hands the convolution output of layer i (0..14) and the layer's instance
    norm to ``normalise(i, h, norm)``, which returns the normalised (and modulated) features: one
    backbone serves FiLM, plain IN and the baselines' conditioning modules alike.
    ``affine[i]`` says whether layer i's instance norm has its own learned scale and shift.

    ``feature_skips``: encoder layers whose (normalised, modulated, rectified) features are added to the
    decoder layer of the same resolution and width, U-Net style: 0 -> after layer 14 (full resolution),
    1 -> after layer 13 (half). Fine detail (pixel noise) then reaches the output without passing through
    the 1/4-resolution bottleneck. ``forward(..., gate_skip)``: a conditioned network may scale each
    skipped feature map by the task before it is added, ``gate_skip(i, y)`` (``skip_gate``: FiLM's own
    site in ``FiLMNet``, a channel attention in SGN, a per-task scale in Piggyback). The other departures
    (``input_skip``, ``output_scale``, ``output_gate``) are the ``OutputHead``'s.
    """

    def __init__(self, width=1.0, affine=False, input_skip=True, feature_skips=(), output_scale="none",
                 output_gate=False):
        super().__init__()
        self.feature_skips = tuple(sorted(feature_skips))
        unknown = [i for i in self.feature_skips if i not in SKIP_TARGETS]
        if unknown:
            raise ValueError(f"feature_skips takes encoder layers {sorted(SKIP_TARGETS)} (added after decoder "
                             f"layers {list(SKIP_TARGETS.values())}), got {list(feature_skips)}")
        self.head = OutputHead(input_skip, output_scale, output_gate)
        ch = layer_channels(width)
        self.channels = ch
        affine = (affine,) * len(LAYERS) if isinstance(affine, bool) else tuple(affine)
        specs = [(3, ch[0], 9, 1, False), (ch[0], ch[1], 3, 2, False), (ch[1], ch[2], 3, 2, False)]
        specs += [(ch[i - 1], ch[i], 3, 1, False) for pair in RESIDUAL_PAIRS for i in pair]
        specs += [(ch[i - 1], ch[i], 3, 1, True) for i in DECODER]
        self.convs = nn.ModuleList(ConvLayer(*s) for s in specs)
        self.norms = nn.ModuleList(nn.InstanceNorm2d(c, affine=a) for c, a in zip(ch, affine))
        self.last = ConvLayer(ch[DECODER[-1]], self.head.channels, 9)
        if output_gate:
            with torch.no_grad():
                self.last.conv.bias[6] = GATE_INIT

    def layer(self, i, h, normalise):
        return normalise(i, self.convs[i](h), self.norms[i])

    def forward(self, x, normalise, gate_skip=None):
        h, w = x.shape[2:]
        # Two stride-2 convolutions: pad to a multiple of 4 so any size >= 16 comes back unchanged.
        pad_h, pad_w = -h % 4, -w % 4
        y = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else x
        skipped = {}
        for i in ENCODER:
            y = F.relu(self.layer(i, y, normalise))
            if i in self.feature_skips:
                skipped[SKIP_TARGETS[i]] = gate_skip(i, y) if gate_skip else y
        for first, second in RESIDUAL_PAIRS:
            y = y + self.layer(second, F.relu(self.layer(first, y, normalise)), normalise)
        for i in DECODER:
            y = F.relu(self.layer(i, y, normalise))
            if i in skipped:
                y = y + skipped[i]
        return self.head(self.last(y)[:, :, :h, :w], x)


def plain_norm(i, h, norm):
    return norm(h)
