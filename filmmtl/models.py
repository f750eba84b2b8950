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
import torch
import torch.nn as nn
import torch.nn.functional as F

from filmmtl import baselines
from filmmtl.backbone import ENCODER, LAYERS, Backbone, check_images, check_task_vectors, plain_norm


def count_parameters(model):
    """Parameters, the paper's measure of model size: frozen ones included, binary masks (``counted_as_bits``,
    Piggyback's) excluded. Modules shared between sub-networks count once."""
    return sum(p.numel() for p in model.parameters() if not getattr(p, "counted_as_bits", False))


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


BUILDERS = {
    "proposed": lambda n, w, **kw: FiLMNet(n, w, **kw),
    "encin": lambda n, w, **kw: FiLMNet(n, w, plain_layers=ENCODER, **kw),
    "sgn": lambda n, w, **kw: baselines.SGNNet(n, w, **kw),
    "sgn_bias": lambda n, w, **kw: baselines.SGNNet(n, w, bias=True, **kw),
    "piggyback": lambda n, w, **kw: baselines.PiggybackNet(n, w, **kw),
    "single": lambda n, w, **kw: baselines.TaskRoutedNet(n, w, **kw),
    "sharedenc": lambda n, w, **kw: baselines.TaskRoutedNet(n, w, share_encoder=True, **kw),
    "johnson": lambda n, w, **kw: JohnsonNet(n, w, **kw),
}
MODEL_NAMES = tuple(BUILDERS)
FILM_MODELS = ("proposed", "encin")  # the networks whose modulation a FiLM generator makes
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
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(BUILDERS)}")
    if not (isinstance(n_tasks, int) and n_tasks >= 1):
        raise ValueError(f"n_tasks must be a positive integer, got {n_tasks!r}")
    model = BUILDERS[name](n_tasks, width, **options)
    model.name = name
    return model
