"""The paper's network: Johnson's encoder-decoder, instance norm and FiLM (and its plain relative).

Every model here is called as ``model(x, c)``: ``x`` float images (B, 3, H, W) in [0, 1], ``c`` task
vectors (B, n) or (n,). It returns (B, 3, H, W). The output is linear (no squashing): that is the
project's choice, the paper is silent; metrics and pictures clamp it to [0, 1].

Where the paper's parameter counts come from (width 1.0, the paper's six tasks)::

    convolutions (weights + biases) of Johnson's network          1,676,035
    + InstanceNorm2d(affine=True): 2 x 1,600 channels             + 3,200  = 1,679,235  ("johnson")
    FiLM instead: IN without affine + Linear(6 -> 2 x 1,600)      + 22,400 = 1,698,435  ("proposed")

The 1,600 modulated channels are the 15 normalised layers: 32, 64, 128, ten times 128 (the residual
blocks), 64, 32. The last 9x9 convolution is neither normalised nor modulated.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

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


def count_parameters(model):
    """Parameters, the paper's measure of model size: frozen ones included, binary masks (``counted_as_bits``,
    Piggyback's) excluded. Modules shared between sub-networks count once."""
    return sum(p.numel() for p in model.parameters() if not getattr(p, "counted_as_bits", False))


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
    if not torch.isfinite(x).all():
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
    if not torch.isfinite(c).all() or (c < 0).any() or (c > 1).any():
        raise ValueError(f"task strengths must be finite and in [0, 1] (0 = off, 1 = the trained task), got "
                         f"{c.tolist()}; to extrapolate, make FiLM parameters yourself: "
                         "model(x, film=model.generator(c))")
    return c


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


class Backbone(nn.Module):
    """Johnson et al.'s encoder, 5 residual blocks and decoder, with a hook after each instance norm.

    ``forward(x, normalise)`` hands the convolution output of layer i (0..14) and the layer's instance
    norm to ``normalise(i, h, norm)``, which returns the normalised (and modulated) features: one
    backbone serves FiLM, plain IN and the baselines' conditioning modules alike.
    ``affine[i]`` says whether layer i's instance norm has its own learned scale and shift.

    The paper is silent on the output layer; three parameter-free departures, each switchable off
    (all off = the paper's network taken literally, which is exactly blind to each input channel's
    offset and to the image's contrast: the first convolution is linear, so its output moves by a
    constant per channel and scales with the contrast, and the first instance norm removes both; see
    ``tests/test_models.py``):

    - ``input_skip`` adds the input image to the last convolution's output, giving back the colour and
      contrast that instance norm discards (without it, reconstruction stalls near 14 dB).
    - ``feature_skips``: encoder layers whose (normalised, modulated, rectified) features are added to
      the decoder layer of the same resolution and width, U-Net style: 0 -> after layer 14 (full
      resolution), 1 -> after layer 13 (half). Fine detail (pixel noise) then reaches the output layer
      without passing through the 1/4-resolution bottleneck.
    - ``output_scale="std"`` multiplies the correction by each input channel's standard deviation,
      ``x + std(x) * f(x)``: the network becomes equivariant to changes of contrast a and colour offset b
      (``model(a x + b) = a model(x) + b``), so a correction learned at one contrast fits another.
    - ``forward(..., gate_skip)``: a conditioned network may scale each skipped feature map by the task
      before it is added, ``gate_skip(i, y)`` (``skip_gate``: FiLM's own site in ``FiLMNet``, a channel
      attention in SGN, a per-task scale in Piggyback).
    - ``output_gate`` (the one departure with parameters: 4 more output channels of the last
      convolution, 10,372 at width 1.0) blends, per pixel, that relative output with an absolute one:
      ``a * (x + s * r) + (1 - a) * d`` with ``a = sigmoid(z)`` and ``(r, d, z)`` the last convolution's
      3 + 3 + 1 channels. Why: instance norm leaves the network no way to know the input's absolute
      colour, so a target in absolute colours (segmentation's magenta background, a painting's palette)
      cannot be written as a correction of the input; with the gate it is painted directly (``a = 0``)
      while near-identity tasks keep the input (``a = 1``).
    """

    def __init__(self, width=1.0, affine=False, input_skip=True, feature_skips=(), output_scale="none",
                 output_gate=False):
        super().__init__()
        self.input_skip = input_skip
        self.feature_skips = tuple(sorted(feature_skips))
        unknown = [i for i in self.feature_skips if i not in SKIP_TARGETS]
        if unknown:
            raise ValueError(f"feature_skips takes encoder layers {sorted(SKIP_TARGETS)} (added after decoder "
                             f"layers {list(SKIP_TARGETS.values())}), got {list(feature_skips)}")
        if output_scale not in OUTPUT_SCALES:
            raise ValueError(f"output_scale must be one of {OUTPUT_SCALES}, got {output_scale!r}")
        if output_scale != "none" and not input_skip:
            raise ValueError("output_scale scales the correction added to the input: it needs input_skip=True")
        if output_gate and not input_skip:
            raise ValueError("output_gate blends the input with an absolute output: it needs input_skip=True")
        self.output_scale = output_scale
        self.output_gate = output_gate
        ch = layer_channels(width)
        self.channels = ch
        affine = (affine,) * len(LAYERS) if isinstance(affine, bool) else tuple(affine)
        specs = [(3, ch[0], 9, 1, False), (ch[0], ch[1], 3, 2, False), (ch[1], ch[2], 3, 2, False)]
        specs += [(ch[i - 1], ch[i], 3, 1, False) for pair in RESIDUAL_PAIRS for i in pair]
        specs += [(ch[i - 1], ch[i], 3, 1, True) for i in DECODER]
        self.convs = nn.ModuleList(ConvLayer(*s) for s in specs)
        self.norms = nn.ModuleList(nn.InstanceNorm2d(c, affine=a) for c, a in zip(ch, affine))
        self.last = ConvLayer(ch[14], 3 + 4 * output_gate, 9)
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
        out = self.last(y)[:, :, :h, :w]
        if not self.input_skip:
            return out
        correction = out[:, :3]
        if self.output_scale == "std":
            correction = correction * x.std(dim=(2, 3), keepdim=True).clamp_min(MIN_STD)
        if not self.output_gate:
            return x + correction
        keep = torch.sigmoid(out[:, 6:7])
        return keep * (x + correction) + (1 - keep) * out[:, 3:6]


def plain_norm(i, h, norm):
    return norm(h)


def film_norm(h, gamma, beta, eps):
    """Instance norm then FiLM in one fused call: fold the batch into channels so that each sample's
    gamma and beta become the per-channel affine weights of ``F.instance_norm`` (as fast as plain IN)."""
    b, c, height, width = h.shape
    out = F.instance_norm(h.reshape(1, b * c, height, width), weight=gamma.reshape(-1),
                          bias=beta.reshape(-1), eps=eps)
    return out.reshape(b, c, height, width)


class JohnsonNet(nn.Module):
    """The plain single-task network: IN with affine, no FiLM. ``c`` is validated and then ignored."""

    def __init__(self, n_tasks=6, width=1.0, **design):
        super().__init__()
        self.n_tasks = n_tasks
        self.backbone = Backbone(width, affine=True, **design)

    def forward(self, x, c):
        check_images(x, self)
        check_task_vectors(c, self.n_tasks, x.shape[0])
        return self.backbone(x, plain_norm)


class FiLMGenerator(nn.Module):
    """Task vector -> (gamma, beta) for every modulated channel, through ``layers`` fully connected layers.

    The paper uses one layer. Deeper generators put ReLU and ``hidden`` units between layers (a choice:
    the paper only says "fully connected layers, after StyleGAN's mapping network"). Hidden biases start
    at zero and the last bias at gamma = 1, beta = 0, so the zero vector gives the identity modulation
    and the untrained network is a plain IN network.

    ``init_std``: the last layer's weights start as N(0, init_std^2), so every task starts near the
    identity modulation and learns its own (FiLM implementations do this). None keeps PyTorch's default
    (uniform, about +-0.41 for 6 tasks): each task then starts with a random gamma in [0.59, 1.41] and beta
    in +-0.41 on every layer, far from where training moves it (measured: columns move 0.5 to 3.7 in
    4,000 steps against an initial norm of about 9.3).

    ``closed``: the last ``closed`` channels start at gamma = 0 instead of 1 (the gated feature skips: they
    start shut and each task opens them as far as it needs).
    """

    def __init__(self, n_tasks, n_channels, layers=1, hidden=256, init_std=None, closed=0):
        super().__init__()
        if layers < 1:
            raise ValueError(f"the FiLM generator needs at least 1 layer, got {layers}")
        sizes = [n_tasks] + [hidden] * (layers - 1) + [2 * n_channels]
        mods = []
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            mods.append(nn.Linear(a, b))
            if k < layers - 1:
                mods.append(nn.ReLU())
        self.mlp = nn.Sequential(*mods)
        self.n_channels = n_channels
        with torch.no_grad():
            for m in self.mlp:
                if isinstance(m, nn.Linear):
                    m.bias.zero_()
            self.mlp[-1].bias[:n_channels - closed] = 1.0
            if init_std is not None:
                self.mlp[-1].weight.normal_(0.0, init_std)

    def forward(self, c):
        out = self.mlp(c)
        return out[:, :self.n_channels], out[:, self.n_channels:]


class FiLMNet(nn.Module):
    """The proposed network: IN without affine + FiLM after each normalised layer, one FiLM generator.

    ``plain_layers`` lists layers that get a plain IN with affine instead of FiLM (EncIN: (0, 1, 2)).
    ``film(c)`` returns the (gamma, beta) the generator makes; ``forward(x, film=...)`` takes them
    directly, so gamma/beta can be inspected, edited or interpolated instead of task vectors.

    ``skip_gate`` (needs ``feature_skips``): each skipped feature map gets a FiLM site of its own,
    ``gamma * h + beta`` before it is added to the decoder, with gamma starting at 0. A task that needs
    fine detail at the output (restoration: the noise of each pixel) opens its skip; one that must not
    copy detail (segmentation, the styles) keeps it shut. An ungated skip is shared by every task, and it
    cost segmentation and the styles in every six-task run of the design study. Its sites are keyed
    ``"skip0"``, ``"skip1"`` in ``offsets`` and come after the 15 layers' channels in gamma and beta.
    """

    def __init__(self, n_tasks=6, width=1.0, generator_layers=1, generator_hidden=256, plain_layers=(),
                 generator_init_std=None, skip_gate=False, **design):
        super().__init__()
        self.n_tasks = n_tasks
        self.plain_layers = tuple(sorted(plain_layers))
        self.backbone = Backbone(width, affine=[i in self.plain_layers for i in LAYERS], **design)
        if skip_gate and not self.backbone.feature_skips:
            raise ValueError("skip_gate modulates the feature skips: it needs feature_skips, e.g. [0]")
        self.film_layers = tuple(i for i in LAYERS if i not in self.plain_layers)
        # FiLM site -> the encoder layer whose channels it modulates (a skip site: the layer it skips from).
        self.skip_sites = {f"skip{i}": i for i in self.backbone.feature_skips} if skip_gate else {}
        sites = {**{i: i for i in self.film_layers}, **self.skip_sites}
        self.site_channels = {site: self.backbone.channels[layer] for site, layer in sites.items()}
        widths = list(self.site_channels.values())
        self.offsets = dict(zip(sites, [sum(widths[:k]) for k in range(len(widths))]))
        closed = sum(self.site_channels[site] for site in self.skip_sites)
        self.generator = FiLMGenerator(n_tasks, sum(widths), generator_layers, generator_hidden, generator_init_std,
                                       closed=closed)

    def film(self, c):
        """(gamma, beta), each (B, modulated channels), for task vectors ``c`` of shape (n,) or (B, n)."""
        c = torch.as_tensor(c, dtype=torch.float32)
        c = check_task_vectors(c, self.n_tasks, c.shape[0] if c.dim() == 2 else 1)
        weight = self.generator.mlp[0].weight
        return self.generator(c.to(weight.device, weight.dtype))

    def film_by_layer(self, c):
        """{layer index: (gamma, beta)} with (B, channels) tensors, and the gated skips' ("skip0", ...): how
        to read the modulation."""
        gamma, beta = self.film(c)
        return {site: self._slice(site, gamma, beta) for site in self.offsets}

    def _slice(self, site, gamma, beta):
        start, stop = self.offsets[site], self.offsets[site] + self.site_channels[site]
        return gamma[:, start:stop], beta[:, start:stop]

    def forward(self, x, c=None, film=None):
        check_images(x, self)
        if film is None:
            film = self.generator(check_task_vectors(c, self.n_tasks, x.shape[0]).to(x.device, x.dtype))
        gamma, beta = film
        if gamma.shape[0] != x.shape[0]:
            if gamma.shape[0] != 1:
                raise ValueError(f"got FiLM parameters for {gamma.shape[0]} samples and {x.shape[0]} images")
            gamma, beta = gamma.expand(x.shape[0], -1), beta.expand(x.shape[0], -1)

        def normalise(i, h, norm):
            if i not in self.offsets:
                return norm(h)
            return film_norm(h, *self._slice(i, gamma, beta), norm.eps)

        def gate_skip(layer, y):  # the skip's own FiLM site
            g, b = self._slice(f"skip{layer}", gamma, beta)
            return y * g[:, :, None, None] + b[:, :, None, None]
        return self.backbone(x, normalise, gate_skip if self.skip_sites else None)


def _builders():
    from filmmtl import baselines
    return {
        "proposed": lambda n, w, **kw: FiLMNet(n, w, **kw),
        "encin": lambda n, w, **kw: FiLMNet(n, w, plain_layers=(0, 1, 2), **kw),
        "johnson": lambda n, w, **kw: JohnsonNet(n, w, **kw),
        "sgn": lambda n, w, **kw: baselines.SGNNet(n, w, **kw),
        "sgn_bias": lambda n, w, **kw: baselines.SGNNet(n, w, bias=True, **kw),
        "piggyback": lambda n, w, **kw: baselines.PiggybackNet(n, w, **kw),
        "single": lambda n, w, **kw: baselines.TaskRoutedNet(n, w, **kw),
        "sharedenc": lambda n, w, **kw: baselines.TaskRoutedNet(n, w, share_encoder=True, **kw),
    }


MODEL_NAMES = ("proposed", "encin", "sgn", "sgn_bias", "piggyback", "single", "sharedenc", "johnson")
# Networks with a task input that can gate a skip. Single, SharedEnc and Johnson give each task a network
# of its own, whose skip is already the task's.
SKIP_GATED_MODELS = ("proposed", "encin", "sgn", "sgn_bias", "piggyback")


def build(name, n_tasks=6, width=1.0, **options):
    """Build a model by name: ``build("proposed")`` is the paper's network at the paper's size.

    Names: proposed, encin (FiLM networks: ``generator_layers``, ``generator_hidden``,
    ``generator_init_std`` options), johnson, and the baselines of ``filmmtl.baselines``:
    sgn, sgn_bias, piggyback, single, sharedenc. ``skip_gate`` (needs ``feature_skips``) gates the skips by
    the task in every network that has a task input: proposed, encin, sgn, sgn_bias, piggyback. Every model
    takes the backbone's design options ``input_skip``,
    ``feature_skips``, ``output_scale`` and ``output_gate`` (see ``Backbone``); all of them at their defaults here.
    """
    builders = _builders()
    if name not in builders:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(builders)}")
    if not (isinstance(n_tasks, int) and n_tasks >= 1):
        raise ValueError(f"n_tasks must be a positive integer, got {n_tasks!r}")
    model = builders[name](n_tasks, width, **options)
    model.name = name
    return model
