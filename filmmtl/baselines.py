"""The paper's baselines (Table 2), each built from the same ``Backbone`` as the proposed network.

Parameter counts in the six-task setting, width 1.0 (tests assert them):

====================  ===========  =====================================================================
name                  parameters   what is task-specific
====================  ===========  =====================================================================
``sgn``               1,765,363    10 conditional channel attention modules (Chang et al.'s CCAM)
``sgn_bias``          1,902,243    the same with a bias output: F * a + b
``piggyback``         1,688,835    per task: binary masks over every conv weight (bits) + 1,600 IN scales
``single``            10,075,410   everything: six plain Johnson networks
``sharedenc``         9,572,370    residual blocks and decoder (the encoder is shared)
====================  ===========  =====================================================================
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from filmmtl.backbone import (DECODER, ENCODER, LAYERS, RESIDUAL_PAIRS, Backbone, check_images, check_task_vectors,
                            plain_norm)

# Normalised layers followed by an attention module: the three encoder norms, the second norm of each
# residual block, the two decoder norms.
ATTENTION_LAYERS = ENCODER + tuple(second for _, second in RESIDUAL_PAIRS) + DECODER
# A gated skip starts nearly shut, as FiLM's skip site does at gamma = 0, yet not so deep in the sigmoid's
# flat tail that a task cannot open it: sigmoid(-4) = 0.018.
SKIP_CLOSED_LOGIT = -4.0


class ChannelAttention(nn.Module):
    """SGN's conditional channel attention, as inferred from the paper's parameter count (no public code
    for SGN was found): e = Linear(n -> C)(c); z = [global average pool of F, e];
    a = sigmoid(FC(hidden -> C)(ReLU(FC(2C -> hidden)(z)))); output F * a, hidden = C/4.
    With ``bias=True`` (SGN+bias): hidden = C/2 and an output of 2C split into a sigmoid scale a and a
    bias b: F * a + b. Both readings reproduce Table 2's counts exactly."""

    def __init__(self, n_tasks, channels, bias=False, closed=False):
        super().__init__()
        self.bias = bias
        hidden = channels // 2 if bias else channels // 4
        self.embed = nn.Linear(n_tasks, channels)
        self.squeeze = nn.Linear(2 * channels, max(1, hidden))
        self.excite = nn.Linear(max(1, hidden), channels * (2 if bias else 1))
        if closed:  # a skip gate: the same small scale for every input at the start, and no shift
            with torch.no_grad():
                self.excite.weight.zero_()
                self.excite.bias.zero_()[:channels] = SKIP_CLOSED_LOGIT

    def forward(self, h, c):
        z = torch.cat([h.mean(dim=(2, 3)), self.embed(c)], 1)
        a = self.excite(F.relu(self.squeeze(z)))
        if self.bias:
            scale, shift = a.chunk(2, 1)
            return h * torch.sigmoid(scale)[:, :, None, None] + shift[:, :, None, None]
        return h * torch.sigmoid(a)[:, :, None, None]


class SGNNet(nn.Module):
    """SGN (and SGN with bias control) on the Johnson backbone: IN without affine, no FiLM.
    ``skip_gate``: each feature skip gets an attention module of its own, starting shut, so the task opens
    it through SGN's own conditioning (as FiLM's skip site does for the proposed network)."""

    def __init__(self, n_tasks=6, width=1.0, bias=False, skip_gate=False, **design):
        super().__init__()
        self.n_tasks = n_tasks
        self.backbone = Backbone(width, affine=False, **design)
        if skip_gate and not self.backbone.feature_skips:
            raise ValueError("skip_gate gates the feature skips: it needs feature_skips, e.g. [0]")
        self.attention = nn.ModuleDict({str(i): ChannelAttention(n_tasks, self.backbone.channels[i], bias)
                                        for i in ATTENTION_LAYERS})
        self.skip_attention = nn.ModuleDict(
            {str(i): ChannelAttention(n_tasks, self.backbone.channels[i], bias, closed=True)
             for i in (self.backbone.feature_skips if skip_gate else ())})

    def forward(self, x, c):
        check_images(x, self)
        c = check_task_vectors(c, self.n_tasks, x.shape[0]).to(x.device)

        def normalise(i, h, norm):
            h = norm(h)
            return self.attention[str(i)](h, c) if str(i) in self.attention else h

        def gate_skip(i, y):
            return self.skip_attention[str(i)](y, c)
        return self.backbone(x, normalise, gate_skip if len(self.skip_attention) else None)


def task_indices(c, name):
    """Task index per sample for networks that cannot mix: zeros -> 0 (reconstruction), one-hot -> its task."""
    ones = (c == 1).sum(1)
    if not bool(((c == 0) | (c == 1)).all()) or bool((ones > 1).any()):
        raise ValueError(f"{name} runs one task at a time: task vectors must be all zeros or one-hot; "
                         "mixes and strengths need a FiLM or SGN network")
    return torch.where(ones == 1, c.argmax(1), torch.zeros_like(ones))


def route(x, indices, run):
    """Run each task's samples through ``run(task, samples)`` and put the outputs back in order."""
    out = None
    for task in indices.unique().tolist():
        sel = (indices == task).nonzero().flatten()
        y = run(task, x[sel])
        out = y.new_empty((x.shape[0],) + y.shape[1:]) if out is None else out
        out[sel] = y
    return out


class TaskRoutedNet(nn.Module):
    """Single: one plain Johnson network per task. SharedEnc: the same with one shared encoder
    (layers 0-2 and their norms are the same modules in every network, so they count once)."""

    can_mix = False

    def __init__(self, n_tasks=6, width=1.0, share_encoder=False, **design):
        super().__init__()
        self.n_tasks = n_tasks
        self.nets = nn.ModuleList(Backbone(width, affine=True, **design) for _ in range(n_tasks))
        if share_encoder:
            for net in self.nets[1:]:
                for i in ENCODER:
                    net.convs[i], net.norms[i] = self.nets[0].convs[i], self.nets[0].norms[i]
        self.label = "sharedenc" if share_encoder else "single"

    def forward(self, x, c):
        check_images(x, self)
        indices = task_indices(check_task_vectors(c, self.n_tasks, x.shape[0]), self.label)
        return route(x, indices.to(x.device), lambda t, xs: self.nets[t](xs, plain_norm))


MASK_INIT, MASK_THRESHOLD = 1e-2, 5e-3  # Mallya et al.'s real-valued mask initialisation and threshold


class PiggybackNet(nn.Module):
    """Piggyback (Mallya et al.): a frozen base network (Johnson, IN with affine) trained on one task;
    per task, a binary mask over every convolution weight (real-valued scores thresholded at 5e-3,
    straight-through gradient) and its own instance-norm *scale* for all 1,600 channels (the shift stays
    the base's). Masks count as bits, not parameters. Load the base with ``load_base``.
    ``skip_gate``: per task, a scale for each skipped channel, the same mechanism as its norm scales;
    it starts at 1, where the base (trained with its skip open) left it."""

    can_mix = False

    def __init__(self, n_tasks=6, width=1.0, skip_gate=False, **design):
        super().__init__()
        self.n_tasks = n_tasks
        self.design = {"width": width, **design}  # what its base must have been built with
        self.backbone = Backbone(width, affine=True, **design).requires_grad_(False)
        if skip_gate and not self.backbone.feature_skips:
            raise ValueError("skip_gate gates the feature skips: it needs feature_skips, e.g. [0]")
        self.skip_scales = nn.ParameterDict(
            {str(i): nn.Parameter(torch.ones(n_tasks, self.backbone.channels[i]))
             for i in (self.backbone.feature_skips if skip_gate else ())})
        convs = {name: p for name, p in self.backbone.named_parameters() if name.endswith("conv.weight")}
        self.mask_names = list(convs)
        self.masks = nn.ParameterList()
        for _ in range(n_tasks):
            for p in convs.values():
                mask = nn.Parameter(torch.full_like(p, MASK_INIT))
                mask.counted_as_bits = True
                self.masks.append(mask)
        self.scales = nn.Parameter(torch.ones(n_tasks, sum(self.backbone.channels)))
        self.offsets = [sum(self.backbone.channels[:i]) for i in LAYERS]

    def load_base(self, state_dict, base_config=None, source="the base"):
        """Take a trained plain Johnson network's weights (``backbone.*``) as the frozen base; given its
        checkpoint's config, refuse a base of another backbone (its masks would fit no weights)."""
        plain = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # a config's lists, a model's tuples
        mismatch = {k: (base_config[k], v) for k, v in self.design.items()
                    if base_config is not None and plain(base_config[k]) != plain(v)}
        if mismatch:
            raise ValueError(f"piggyback's base {source} was built with another backbone (base, piggyback): "
                             f"{mismatch}; train the base with the same design")
        self.backbone.load_state_dict({k.removeprefix("backbone."): v for k, v in state_dict.items()})
        with torch.no_grad():
            gammas = torch.cat([norm.weight for norm in self.backbone.norms])
            self.scales.copy_(gammas.expand_as(self.scales))

    @staticmethod
    def shipped_weight(key, value):
        """An export keeps the binary masks inference uses, as bool (fp16 rounding of a real-valued score
        near the threshold could flip it); None: the default (fp16)."""
        return value > MASK_THRESHOLD if key.startswith("masks.") else None

    def task_weights(self, task):
        n = len(self.mask_names)
        weights = {}
        for name, score in zip(self.mask_names, self.masks[task * n:(task + 1) * n]):
            binary = score + ((score > MASK_THRESHOLD).float() - score).detach()  # straight-through
            weights[name] = self.backbone.get_parameter(name) * binary
        return weights

    def run_task(self, task, x):
        def normalise(i, h, norm):
            scale = self.scales[task, self.offsets[i]:self.offsets[i] + h.shape[1]]
            return F.instance_norm(h, weight=scale, bias=norm.bias, eps=norm.eps)

        def gate_skip(i, y):
            return y * self.skip_scales[str(i)][task][None, :, None, None]
        return functional_call(self.backbone, self.task_weights(task),
                               (x, normalise, gate_skip if len(self.skip_scales) else None), strict=False)

    def forward(self, x, c):
        check_images(x, self)
        indices = task_indices(check_task_vectors(c, self.n_tasks, x.shape[0]), "piggyback")
        return route(x, indices.to(x.device), self.run_task)
