"""Embedded scenes, real-data loaders on fake trees, tasks, task vectors and mix teachers."""
import hashlib
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from filmmtl import data
from filmmtl.tasks import (MIXES, PAPER_MIXES, PAPER_TASKS, TASKS, Mix, Task, TaskSpace, make_input,
                           method2_loss, mix_teacher, register, render_segmentation, segmentation_to_mask)


def test_same_seed_same_scene_and_seed_matters():
    a, b = data.make_scene(3, 32, "train", seed=1), data.make_scene(3, 32, "train", seed=1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], data.make_scene(3, 32, "train", seed=2)[0])


def test_scenes_have_objects_of_the_twenty_classes():
    masks = np.stack([data.make_scene(i, 48)[1] for i in range(60)])
    classes = set(np.unique(masks)) - {0}
    assert classes <= set(range(1, 21)) and len(classes) >= 15
    assert all((m > 0).any() for m in masks)


def test_train_val_and_test_splits_are_disjoint():
    splits = {name: {bytes(x.numpy()) for x in data.embedded_scenes(name, 32, n=40, cache=False).images}
              for name in data.SPLITS}
    assert all(len(images) == 40 for images in splits.values())
    assert not (splits["train"] & splits["val"]) and not (splits["train"] & splits["test"])
    assert not (splits["val"] & splits["test"])


def test_validation_is_the_stream_that_was_called_test_before_the_split():
    # The README says earlier choices were made on the images that are now validation: the digest of the
    # first three scenes that make_scene(i, 32, "test") drew before the split existed.
    digest = hashlib.sha256()
    for i in range(3):
        image, mask = data.make_scene(i, 32, "val")
        digest.update(image.tobytes())
        digest.update(mask.tobytes())
    assert digest.hexdigest() == "44276b2ca73d0991a188f127f1aa38179b238372f37a07469556181366014b5f"


def test_scene_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("FILMMTL_CACHE", str(tmp_path))
    first = data.embedded_scenes("test", 24, n=5)
    assert list(tmp_path.glob("scenes_v*_test_5_24_0.npz"))
    again = data.embedded_scenes("test", 24, n=5)
    assert torch.equal(first.images, again.images) and torch.equal(first.masks, again.masks)
    assert first.images.shape == (5, 3, 24, 24) and first.images.dtype == torch.uint8


def test_unknown_split_or_source():
    with pytest.raises(ValueError, match="'train', 'val', 'test'.*'val' chooses"):
        data.make_scene(0, 32, "validation")
    with pytest.raises(ValueError, match="'scenes', 'sbd' or 'voc'"):
        data.load_dataset("coco", "train", 32)


def _fake_image(path, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)


def make_fake_sbd(root, names=("a", "b", "c")):
    (root / "img").mkdir(parents=True)
    (root / "cls").mkdir()
    for i, name in enumerate(names):
        _fake_image(root / "img" / f"{name}.jpg", i)
        seg = np.zeros((40, 50), np.uint8)
        seg[10:30, 5 + i:25 + i] = i + 1
        scipy.io.savemat(root / "cls" / f"{name}.mat", {"GTcls": {"Segmentation": seg}})
    (root / "train.txt").write_text("\n".join(names[:2]) + "\n")
    (root / "val.txt").write_text(names[2] + "\n")


def make_fake_voc(root, names=("x1", "x2")):
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    for i, name in enumerate(names):
        _fake_image(voc / "JPEGImages" / f"{name}.jpg", i)
        seg = np.zeros((40, 50), np.uint8)
        seg[5:20, 5:20] = 7
        seg[2:5, 4:21] = 255  # void boundary
        png = Image.fromarray(seg, mode="P")
        png.putpalette([v for k in range(256) for v in (k, k, k)])
        png.save(voc / "SegmentationClass" / f"{name}.png")
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(names) + "\n")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text(names[0] + "\n")


def test_fake_sbd_loads_through_the_real_code_path(tmp_path):
    make_fake_sbd(tmp_path / "sbd")
    train = data.load_dataset("sbd", "train", 32, root=tmp_path / "sbd")
    val = data.load_dataset("sbd", "val", 32, root=tmp_path / "sbd")
    assert train.images.shape == (1, 3, 32, 32) and train.masks.shape == (1, 32, 32)  # the last one is val
    assert len(val) == 1 and "held out as validation" in val.source and not torch.equal(val.images, train.images)
    assert set(train.masks.unique().tolist()) <= {0, 1, 2}
    assert len(data.sbd("test", 32, root=tmp_path / "sbd")) == 1


def test_fake_voc_keeps_void(tmp_path):
    make_fake_voc(tmp_path / "voc")
    train = data.voc("train", 32, root=tmp_path / "voc")
    both = data.voc("val", 32, root=tmp_path / "voc")
    assert len(train) == 1 and len(both) == 1
    assert set(torch.cat([train.masks, both.masks]).unique().tolist()) == {0, 7, 255}


def test_sbd_root_from_environment(tmp_path, monkeypatch):
    make_fake_sbd(tmp_path / "env_sbd")
    monkeypatch.setenv("FILMMTL_SBD_ROOT", str(tmp_path / "env_sbd"))
    assert len(data.sbd("train", 24)) == 1


def test_missing_root_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.delenv("FILMMTL_SBD_ROOT", raising=False)
    with pytest.raises(FileNotFoundError, match="FILMMTL_SBD_ROOT"):
        data.sbd("train", 32)
    with pytest.raises(FileNotFoundError, match="ROOT/img"):
        data.sbd("train", 32, root=tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="JPEGImages"):
        data.voc("train", 32, root=tmp_path / "nothing")


def test_empty_split_file_and_unreadable_image(tmp_path):
    make_fake_sbd(tmp_path / "sbd")
    (tmp_path / "sbd" / "val.txt").write_text("\n")
    with pytest.raises(ValueError, match="lists no images"):
        data.sbd("test", 32, root=tmp_path / "sbd")
    (tmp_path / "sbd" / "img" / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match="cannot be read"):
        data.sbd("train", 16, root=tmp_path / "sbd")
    with pytest.raises(ValueError, match="'train', 'val', 'test'"):
        data.sbd("trainval", 32, root=tmp_path / "sbd")


def test_style_images_load():
    gogh = data.load_style("gogh", size=64)
    assert gogh.shape[0] == 3 and min(gogh.shape[1:]) == 64 and 0 <= gogh.min() and gogh.max() <= 1
    with pytest.raises(ValueError, match="choose one of"):
        data.load_style("monet")


def batch(n=6, size=32):
    return data.embedded_scenes("test", size, n=n, cache=False).batch(torch.arange(n))


def test_segmentation_round_trip_is_exact_on_targets():
    images, masks = batch()
    images[0, :, :4, :4] = torch.tensor([1.0, 0.0, 1.0]).view(3, 1, 1)  # a fill-coloured object pixel
    masks[0, :4, :4] = 5
    rendered = render_segmentation(images, masks)
    assert torch.equal(segmentation_to_mask(rendered), masks > 0)


def test_paper_tasks_make_inputs_and_targets():
    images, masks = batch()
    g = torch.Generator().manual_seed(0)
    assert [TASKS[k].paper_id for k in PAPER_TASKS] == [0, 1, 2, 3, 4, 5]
    noisy, _ = TASKS["restoration"].make_input(images, g)
    assert 0.05 < (noisy - images).std() < 0.12 and noisy.min() >= 0 and noisy.max() <= 1
    holed, hole = TASKS["completion"].make_input(images, g)
    assert abs(hole.float().mean().item() - 0.25) < 0.03
    assert torch.all(holed[hole.expand_as(holed)] == 0.5) and torch.equal(holed[~hole.expand_as(holed)],
                                                                           images[~hole.expand_as(images)])
    assert TASKS["style_gogh"].make_target is None and TASKS["style_gogh"].style == "gogh"
    assert TASKS["segmentation"].name_ja and "adversarial" in TASKS["completion"].losses


def test_register_a_new_task_in_one_definition():
    assert TaskSpace(PAPER_TASKS + ("colorization",)).n == 7
    grey, _ = TASKS["colorization"].make_input(*batch()[:1], None)
    assert torch.allclose(grey[:, 0], grey[:, 1])
    with pytest.raises(ValueError, match="already registered"):
        register(Task("completion", "again", "", ("l2",), ()))


def test_task_vectors():
    space = TaskSpace()
    assert torch.equal(space.vector("reconstruction"), torch.zeros(6))
    assert space.vector("restoration+style_gogh").tolist() == [0, 0, 1, 0, 1, 0]
    assert space.vector({"style_munch": 0.25})[5] == 0.25
    assert space.name(space.vector("segmentation+style_gogh")) == "segmentation+style_gogh"
    assert space.name(torch.tensor([0, 0, 0.5, 0, 0, 0])) == "restoration@0.5"


@pytest.mark.parametrize("spec, match", [("denoise", "not in this task set"), ({"restoration": 1.5}, r"\[0, 1\]"),
                                          (torch.zeros(5), r"shape \(6,\)"),
                                          (torch.tensor([0, float("inf"), 0, 0, 0, 0]), "finite")])
def test_bad_task_names_and_vectors(spec, match):
    with pytest.raises(ValueError, match=match):
        TaskSpace().vector(spec)


def test_bad_task_set():
    with pytest.raises(ValueError, match="unknown tasks"):
        TaskSpace(("reconstruction", "dehaze"))
    with pytest.raises(ValueError, match="starts with 'reconstruction'"):
        TaskSpace(("completion",))


def test_mix_teachers_follow_the_paper():
    images, masks = batch()
    stylise = lambda key, x: 1 - x  # a stand-in style network, easy to recognise
    seq = mix_teacher(MIXES["restoration+style_gogh"], images, masks, stylise)
    assert torch.equal(seq, 1 - images)  # restore (the clean image), then stylise
    rs = mix_teacher(MIXES["restoration+segmentation"], images, masks, stylise)
    assert torch.equal(rs, render_segmentation(images, masks))
    ss = mix_teacher(MIXES["segmentation+style_gogh"], images, masks, stylise)
    inside = (masks > 0).unsqueeze(1).expand_as(images)
    assert torch.equal(segmentation_to_mask(ss), masks > 0)
    assert torch.allclose(ss[inside & segmentation_to_mask(1 - images).unsqueeze(1).expand_as(images)],
                          (1 - images)[inside & segmentation_to_mask(1 - images).unsqueeze(1).expand_as(images)])
    with pytest.raises(ValueError, match="segmentation as one part"):
        mix_teacher(Mix(("restoration", "style_gogh"), "masking"), images, masks, stylise)
    assert [m.key for m in PAPER_MIXES] == ["restoration+style_gogh", "restoration+segmentation",
                                            "segmentation+style_gogh"]


def test_mix_input_and_method2_loss():
    images, masks = batch()
    g = torch.Generator().manual_seed(0)
    noisy, _ = make_input(("restoration", "segmentation"), images, g)
    assert (noisy - images).abs().mean() > 0.03
    losses = method2_loss(MIXES["restoration+segmentation"], images, images, masks,
                          lambda key, out, x, m: {"restoration": 1.0, "segmentation": 2.0}[key])
    assert losses == 3.0
