"""Bad input as a user gives it: nothing lost, nothing silently accepted, errors that name the fix."""
import json
import math
import os
import stat
import zipfile

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from filmmtl import data
from filmmtl.__main__ import main
from filmmtl.checkpoints import export_checkpoint, read_manifest, verify
from filmmtl.evaluate import evaluate, json_ready
from filmmtl.models import build
from filmmtl.tasks import TaskSpace
from filmmtl.train import NonFiniteLoss, Trainer, load_model


def smoke(**overrides):
    return Trainer(profile="smoke", quiet=True, **{"eval_every": 0, **overrides})


@pytest.fixture
def trained(tmp_path):
    """A finished two-step training checkpoint and its .json, made by the CLI."""
    out = tmp_path / "run.pt"
    main(["train", "--profile", "smoke", "--out", str(out), "--quiet", "--steps", "2"])
    return out


# ---------------------------------------------------------------- checkpoints and exports

def test_export_onto_its_own_checkpoint_is_refused_and_destroys_nothing(trained):
    before = trained.read_bytes()
    with pytest.raises(SystemExit, match="would overwrite .*run.pt, which this command reads"):
        main(["export", "--checkpoint", str(trained), "--out", str(trained)])
    assert trained.read_bytes() == before
    smoke(steps=2).load(trained)  # still resumable


def test_export_never_overwrites_another_training_checkpoint(trained, tmp_path):
    other = smoke(steps=1).fit().save(tmp_path / "other.pt")
    before = other.read_bytes()
    with pytest.raises(SystemExit, match="is a training checkpoint"):
        main(["export", "--checkpoint", str(trained), "--out", str(other)])
    assert other.read_bytes() == before


def test_export_updates_only_its_own_manifest_line(trained, tmp_path):
    shipped = tmp_path / "shipped"
    first = export_checkpoint(trained, shipped / "a.pt", "cmd")
    export_checkpoint(trained, shipped / "b.pt", "cmd")
    first.write_bytes(first.read_bytes() + b"tampered")
    export_checkpoint(trained, shipped / "b.pt", "cmd again")  # re-exporting b must not re-bless a
    with pytest.raises(ValueError, match="does not match"):
        verify(first)
    with pytest.raises(ValueError, match="does not match"):
        load_model(first)
    with pytest.raises(SystemExit, match="does not match"):
        main(["evaluate", "--checkpoint", str(first)])
    assert set(read_manifest(shipped)) == {"a.pt", "b.pt"}


def test_evaluate_never_overwrites_a_report_unasked(trained, tmp_path, capsys):
    report = tmp_path / "report.json"
    report.write_text("an earlier result")
    with pytest.raises(SystemExit, match="--overwrite"):
        main(["evaluate", "--checkpoint", str(trained), "--n", "2", "--out", str(report)])
    assert report.read_text() == "an earlier result"
    main(["evaluate", "--checkpoint", str(trained), "--n", "2", "--out", str(report), "--overwrite"])
    assert json.loads(report.read_text())["scores"]


def test_unlisted_file_and_malformed_manifest_line(trained, tmp_path):
    shipped = tmp_path / "shipped"
    export_checkpoint(trained, shipped / "a.pt", "cmd")
    (shipped / "stray.pt").write_bytes((shipped / "a.pt").read_bytes())
    with pytest.raises(ValueError, match="not listed"):
        load_model(shipped / "stray.pt")
    (shipped / "MANIFEST.sha256").write_text("not a sha  a.pt\n")
    with pytest.raises(ValueError, match=r"line 1: expected '<64 hex digits>  <file name>'"):
        load_model(shipped / "a.pt")


def test_export_without_sidecar_names_the_fix(trained, tmp_path):
    trained.with_suffix(".json").unlink()
    with pytest.raises(SystemExit, match="--command"):
        main(["export", "--checkpoint", str(trained), "--out", str(tmp_path / "exports" / "x.pt")])
    main(["export", "--checkpoint", str(trained), "--out", str(tmp_path / "exports" / "x.pt"),
          "--command", "made by hand"])
    assert json.loads((tmp_path / "exports" / "x.json").read_text())["command"] == "made by hand"


def test_resuming_an_export_says_why_not(trained, tmp_path):
    exported = export_checkpoint(trained, tmp_path / "shipped" / "a.pt", "cmd")
    with pytest.raises(ValueError, match="exported .weights-only. checkpoint and cannot be resumed"):
        smoke(steps=2).load(exported)


def test_checkpoints_carry_a_format_version_and_refuse_newer_ones(trained, tmp_path):
    state = torch.load(trained, weights_only=True)
    assert state["format"] == 2
    state["format"] = 99
    torch.save(state, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="format 99, newer than this filmmtl reads"):
        load_model(tmp_path / "future.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a filmmtl checkpoint"):
        load_model(tmp_path / "foreign.pt")


def test_a_checkpoint_without_version_loads_as_made(trained, tmp_path):
    """Files written before the format version (the first shipped networks) load with the design they had."""
    state = torch.load(trained, weights_only=True)
    for key in ("format", "balance_ema"):
        state.pop(key)
    for key in ("feature_skips", "output_scale", "generator_init_std", "balance", "balance_cap", "max_loss"):
        state["config"].pop(key)
    torch.save(state, tmp_path / "old.pt")
    model, cfg, _ = load_model(tmp_path / "old.pt")
    assert cfg["feature_skips"] == [] and cfg["output_scale"] == "none" and model.backbone.feature_skips == ()


# ---------------------------------------------------------------- training runs

@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_steps_are_refused_before_any_work(tmp_path, value):
    with pytest.raises(SystemExit, match="'steps' must be an integer >= 1"):
        main(["train", "--profile", "smoke", "--out", str(tmp_path / "r.pt"), "--set", f"steps={value}"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("field, value, match", [
    ("lr", "nan", "'lr' must be a finite number > 0"), ("batch_size", "0", "'batch_size' must be an integer >= 1"),
    ("width", "-1", "'width' must be a finite number > 0"), ("size", "8", "'size' must be an integer >= 16"),
    ("task_weights", "{'restorashun': 2}", r"task_weights names \['restorashun'\]"),
    ("task_weights", "{'restoration': -1}", "finite numbers >= 0"),
    ("feature_skips", "[5]", "'feature_skips' must be a list of distinct encoder layers"),
    ("amp", "'yes'", "'amp' must be one of 'auto', True, False"),
    ("skip_gate", "True", "skip_gate=True lets the task gate each feature skip: it needs"),
])
def test_every_config_field_is_validated_naming_it(tmp_path, field, value, match):
    with pytest.raises(SystemExit, match=match):
        main(["train", "--profile", "smoke", "--out", str(tmp_path / "r.pt"), "--set", f"{field}={value}"])


def test_resume_refuses_another_run_naming_the_fields(trained, capsys):
    for change, field in ((["--set", "size=48"], "size"), (["--set", "lr=0.01"], "lr"), (["--steps", "5"], "steps")):
        with pytest.raises(SystemExit, match=f"is another run.*{field}: checkpoint"):
            main(["train", "--profile", "smoke", "--out", str(trained), "--resume", "--steps", "2", *change])


def test_resume_ignores_comparison_draws_where_steps_do_not_follow_it(trained, capsys):
    """Experiment 1's network was trained when the course value was 200; it is the same run at 1,200."""
    main(["train", "--profile", "smoke", "--out", str(trained), "--resume", "--steps", "2",
          "--set", "comparison_draws=3"])
    assert "already complete at 2 steps" in capsys.readouterr().out


def test_resuming_a_finished_run_rewrites_nothing(trained, capsys):
    sidecar = trained.with_suffix(".json")
    before, mtime = sidecar.read_text(), sidecar.stat().st_mtime_ns
    main(["train", "--profile", "smoke", "--out", str(trained), "--resume", "--steps", "2"])
    assert "already complete at 2 steps" in capsys.readouterr().out
    assert sidecar.read_text() == before and sidecar.stat().st_mtime_ns == mtime


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_out_is_found_before_training(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(SystemExit, match="cannot write"):
            main(["train", "--profile", "smoke", "--out", str(locked / "r.pt")])
    finally:
        locked.chmod(stat.S_IRWXU)


def test_impossible_out_is_found_before_training_and_evaluation(tmp_path, trained):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(SystemExit, match="cannot write"):
        main(["train", "--profile", "smoke", "--out", str(blocker / "r.pt")])
    with pytest.raises(SystemExit, match="cannot write"):
        main(["evaluate", "--checkpoint", str(trained), "--out", str(blocker / "report.json")])
    with pytest.raises(SystemExit, match="is a folder"):
        main(["train", "--profile", "smoke", "--out", str(tmp_path)])


def test_a_diverged_loss_stops_before_it_reaches_the_checkpoint(tmp_path):
    trainer = smoke(steps=3, checkpoint_every=1, max_loss=10.0)
    trainer.fit(steps=1, checkpoint=tmp_path / "run.pt")
    good = (tmp_path / "run.pt").read_bytes()
    with torch.no_grad():  # finite but enormous outputs: a diverged network, not a NaN
        trainer.model.backbone.last.conv.bias.fill_(1e4)
    with pytest.raises(NonFiniteLoss, match="above max_loss=10"):
        trainer.fit(checkpoint=tmp_path / "run.pt")
    assert (tmp_path / "run.pt").read_bytes() == good


# ---------------------------------------------------------------- networks and task vectors

@pytest.mark.parametrize("name", ["proposed", "johnson", "sgn", "single", "sharedenc"])
def test_empty_batch_and_wrong_dtype_and_non_finite_images(name):
    model = build(name, width=0.25)
    c = torch.zeros(6)
    with pytest.raises(ValueError, match="empty batch"):
        model(torch.rand(0, 3, 32, 32), torch.zeros(0, 6))
    with pytest.raises(TypeError, match=r"torch.float64 but the network's weights are torch.float32"):
        model(torch.rand(1, 3, 32, 32, dtype=torch.float64), c)
    with pytest.raises(TypeError, match="torch.float16"):
        model(torch.rand(1, 3, 32, 32).half(), c)
    bad = torch.rand(1, 3, 32, 32)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        model(bad, c)


def test_strengths_outside_zero_one_are_refused_everywhere():
    space = TaskSpace()
    outside = torch.tensor([0, 1.5, 0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        space.vector("restoration", strength=1.5)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        space.vector(outside)
    with pytest.raises(ValueError, match=r"in \[0, 1\].*model.generator"):
        build("proposed", width=0.25)(torch.rand(1, 3, 32, 32), outside)


def test_the_training_step_checks_values_once_upstream_and_a_user_call_at_the_forward(monkeypatch):
    """Value checks (finite, [0, 1]) wait for a GPU at every forward: the training loop makes its inputs from
    checked task vectors and the package's images, so its forward passes (method 3's teachers too) skip
    them; a user's call still gets them, and so does a call after the loop."""
    from filmmtl.backbone import inputs_checked_upstream
    trainer = smoke(steps=2, mixes=["restoration+style_gogh"], method=3, task_weights={"restoration+style_gogh": 99.0})
    calls = []
    real = torch.isfinite
    monkeypatch.setattr(torch, "isfinite", lambda t: calls.append(tuple(t.shape)) or real(t))
    assert trainer.step()
    # what is left: the host-side check of each job's strengths as TaskSpace makes its vector, (parts,)
    assert calls and all(len(shape) == 1 and shape[0] <= 2 for shape in calls), calls
    model, x = trainer.model.eval(), torch.rand(1, 3, 32, 32)
    x[0, 0, 0, 0] = float("nan")
    with inputs_checked_upstream():
        model(x, trainer.space.vector("restoration"))
    with pytest.raises(ValueError, match="NaN"):
        model(x, trainer.space.vector("restoration"))


def test_unknown_job_in_evaluate_lists_the_known_ones():
    trainer = smoke(steps=1)
    with pytest.raises(ValueError, match=r"cannot evaluate \['denoise'\].*restoration"):
        evaluate(trainer.model, trainer.space, trainer.val_set, ["denoise"])


def test_evaluate_json_is_standard_with_reasons_for_nulls():
    report = json_ready({"scores": {"segmentation": {"iou": math.nan, "psnr": 20.0}}, "x": [math.inf]})
    text = json.dumps(report, allow_nan=False)
    assert "NaN" not in text and "Infinity" not in text
    assert report["scores"]["segmentation"]["iou"] is None and report["x"] == [None]
    assert "IoU of two empty masks" in report["null_reasons"]["scores.segmentation.iou"]


# ---------------------------------------------------------------- data

def test_real_masks_stay_aligned_with_their_images(tmp_path):
    """Odd sizes: the mask follows its image pixel for pixel (nearest by pixel centres)."""
    root = tmp_path / "sbd"
    (root / "img").mkdir(parents=True)
    (root / "cls").mkdir()
    for name, (h, w) in (("odd", (97, 131)), ("wide", (200, 300))):
        seg = np.zeros((h, w), np.uint8)
        seg[:, w // 3:] = 1  # a vertical class edge; the image is white exactly there
        seg[h // 2:, 2 * w // 3:] = 2
        picture = np.where(seg[..., None] > 0, 255, 0).astype(np.uint8).repeat(3, 2)
        Image.fromarray(picture).save(root / "img" / f"{name}.png")
        (root / "img" / f"{name}.png").rename(root / "img" / f"{name}.jpg")
        scipy.io.savemat(root / "cls" / f"{name}.mat", {"GTcls": {"Segmentation": seg}})
    (root / "train.txt").write_text("odd\nwide\n")
    (root / "val.txt").write_text("odd\n")
    train = data.sbd("train", 48, root=root)
    white = train.images.float().mean(1) > 127
    # Measured: 0 pixels differ; legacy "nearest" put the 97x131 mask's edge one column off (48 pixels).
    assert ((train.masks > 0) != white).sum(dim=(1, 2)).max() <= 2


def test_real_data_cache_follows_the_files(tmp_path, monkeypatch):
    from tests.test_data_tasks import make_fake_sbd
    monkeypatch.setenv("FILMMTL_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "sbd"
    make_fake_sbd(root)
    assert len(data.sbd("test", 32, root=root)) == 1
    (root / "val.txt").write_text("a\nb\n")  # the split changed: a new cache entry, not the old images
    assert len(data.sbd("test", 32, root=root)) == 2
    (root / "val.txt").write_text("a\n")
    seg = np.zeros((40, 50), np.uint8)
    seg[:, :] = 9
    scipy.io.savemat(root / "cls" / "a.mat", {"GTcls": {"Segmentation": seg}})
    os.utime(root / "cls" / "a.mat", ns=(1, 1))  # even with a date set back, the size or time differs
    assert set(data.sbd("test", 32, root=root).masks.unique().tolist()) == {9}


def test_truncated_style_image_names_the_file(tmp_path, monkeypatch):
    (tmp_path / "styles").mkdir()
    (tmp_path / "styles" / "gogh_starry_night.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    monkeypatch.setattr(data, "REPO_DATA", tmp_path)
    with pytest.raises(OSError, match="gogh_starry_night.jpg cannot be read"):
        data.load_style("gogh")


def test_exports_are_deflated_and_load_as_saved(trained, tmp_path):
    """Shipped files stay small (every archive entry deflated) and hold the fp16 weights unchanged."""
    exported = export_checkpoint(trained, tmp_path / "shipped" / "a.pt", "cmd")
    with zipfile.ZipFile(exported) as archive:
        assert {entry.compress_type for entry in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    weights = torch.load(trained, weights_only=True)["model"]
    loaded = torch.load(exported, weights_only=True)["model"]
    assert loaded.keys() == weights.keys()
    for name, value in weights.items():
        expected = value.half() if value.is_floating_point() else value
        assert torch.equal(loaded[name], expected), name


# ---------------------------------------------------------------- round three (issue 31)

def test_an_output_never_replaces_its_own_sidecar_or_an_input(trained, tmp_path):
    before = trained.read_bytes()
    with pytest.raises(SystemExit, match="ends in .json"):
        main(["train", "--profile", "smoke", "--out", str(tmp_path / "run.json"), "--steps", "1"])
    with pytest.raises(SystemExit, match="ends in .json"):
        main(["export", "--checkpoint", str(trained), "--out", str(tmp_path / "exp.json")])
    with pytest.raises(SystemExit, match="which this command reads"):
        main(["evaluate", "--checkpoint", str(trained), "--out", str(trained), "--overwrite"])
    with pytest.raises(SystemExit, match="which this command reads"):
        main(["evaluate", "--checkpoint", str(trained), "--out", str(trained.with_suffix(".json")), "--overwrite"])
    assert trained.read_bytes() == before and not (tmp_path / "run.json").read_text().startswith("{\n \"scores")
    assert not list(tmp_path.glob("exp.*"))


@pytest.mark.parametrize("args, match", [(["--n", "0"], "--n must be at least 1"), (["--n", "-1"], "--n must be"),
                                         (["--fid", "-5"], "--fid must be at least 0"),
                                         (["--seeds", "-1"], "--seeds must be at least 0")])
def test_evaluate_counts_are_checked(trained, args, match):
    with pytest.raises(SystemExit, match=match):
        main(["evaluate", "--checkpoint", str(trained), *args])


def test_resume_without_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="no checkpoint at .* to continue"):
        main(["train", "--profile", "smoke", "--out", str(tmp_path / "none.pt"), "--resume", "--steps", "1"])
    assert not (tmp_path / "none.pt").exists()


@pytest.mark.parametrize("value, name", [("False", "retrain"), ("false", "retrain"), (1, "retrain"), ("0", "seed"),
                                         (True, "seed"), (None, "device"), (3, "profile")])
def test_notebook_parameters_are_checked_for_type(tmp_path, value, name):
    from filmmtl.session import Session
    with pytest.raises(TypeError, match=f"notebook parameter {name} must be"):
        Session(**{"profile": "smoke", "output_dir": str(tmp_path), name: value})


def test_papermill_text_for_a_bool_names_the_fix(tmp_path):
    from filmmtl.session import Session
    with pytest.raises(TypeError, match="-p retrain True"):
        Session("smoke", retrain="false", output_dir=str(tmp_path))
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        Session("smoke", output_dir=str(tmp_path / "file"))


def test_duplicate_mixes_and_tasks_are_refused():
    with pytest.raises(ValueError, match="'mixes' must be a list of distinct"):
        smoke(mixes=["restoration+style_gogh", "restoration+style_gogh"], method=3)
    with pytest.raises(SystemExit, match="'tasks' must be a list of distinct"):
        main(["train", "--profile", "smoke", "--out", "/tmp/never.pt", "--set",
              "tasks=['reconstruction', 'reconstruction']"])


def test_cache_variable_empty_or_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FILMMTL_CACHE", "")
    with pytest.raises(ValueError, match="FILMMTL_CACHE is set but empty"):
        data.embedded_scenes("val", 16, n=1)
    (tmp_path / "f").write_text("")
    monkeypatch.setenv("FILMMTL_CACHE", str(tmp_path / "f"))
    with pytest.raises(ValueError, match="is a file, not a folder"):
        data.embedded_scenes("val", 16, n=1)


def test_a_missing_accelerator_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="device 'cuda' is not available on this machine"):
        main(["train", "--profile", "smoke", "--out", str(tmp_path / "x.pt"), "--device", "cuda", "--steps", "1"])


def test_nan_weights_are_named_not_scored(trained, tmp_path):
    state = torch.load(trained, map_location="cpu", weights_only=True)
    first = next(k for k, v in state["model"].items() if v.is_floating_point() and "generator" not in k)
    state["model"][first] = torch.full_like(state["model"][first], float("nan"))
    broken = tmp_path / "broken.pt"
    torch.save(state, broken)
    with pytest.raises(SystemExit, match="output for reconstruction is not finite.*nothing was scored"):
        main(["evaluate", "--checkpoint", str(broken), "--n", "2", "--seeds", "0"])


def test_the_dtype_fix_the_error_names_works():
    model = build("proposed", width=0.25).eval()
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"model.to\(torch.float64\)"):
        model(x, torch.zeros(6))
    model = model.to(torch.float64)  # the fix the message names
    with torch.no_grad():
        assert model(x, torch.zeros(6)).dtype == torch.float64
        assert model.film(torch.zeros(6))[0].dtype == torch.float64


@pytest.mark.parametrize("mode", ["I;16", "I", "L", "P", "RGBA", "CMYK", "LA"])
def test_images_are_read_one_way_in_every_mode(tmp_path, mode):
    """A mid-grey picture stays mid-grey whatever its mode (a 16-bit PNG used to arrive almost white)."""
    if mode in ("I;16", "I"):
        image = Image.fromarray(np.full((20, 30), 32768, np.uint16 if mode == "I;16" else np.int32))
        assert image.mode == mode
    else:
        image = Image.new(mode, (30, 20), {"CMYK": (0, 0, 0, 127), "LA": (128, 255), "P": 0,
                                            "RGBA": (128, 128, 128, 255)}.get(mode, 128))
        if mode == "P":
            image.putpalette([128, 128, 128] * 256)
    path = tmp_path / f"grey.{ {'CMYK': 'jpg', 'I': 'tif'}.get(mode, 'png') }"
    image.save(path)
    read = data.read_image(path)
    assert read.mode == "RGB" and read.size == (30, 20)
    assert abs(np.asarray(read).mean() - 128) < 3, (mode, np.asarray(read).mean())


def test_exif_orientation_is_applied_and_non_images_are_named(tmp_path):
    image = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the camera says "turn me 90 degrees"
    image.save(tmp_path / "turned.jpg", exif=exif)
    assert data.read_image(tmp_path / "turned.jpg").size == (20, 40)
    (tmp_path / "fake.png").write_text("hello")
    with pytest.raises(ValueError, match="fake.png is not an image this can read"):
        data.read_image(tmp_path / "fake.png")


def test_exports_are_reproducible_and_refuse_before_replacing_anything(trained, tmp_path):
    first = export_checkpoint(trained, tmp_path / "a" / "x.pt", "cmd")
    again = export_checkpoint(trained, tmp_path / "b" / "x.pt", "cmd")
    assert first.read_bytes() == again.read_bytes()  # the same checkpoint, the same sha256
    assert load_model(first)[0] is not None
    manifest = tmp_path / "a" / "MANIFEST.sha256"
    good, sidecar = first.read_bytes(), first.with_suffix(".json").read_text()
    manifest.write_text(manifest.read_text() + "not a manifest line\n")
    with pytest.raises(ValueError, match="line 2: expected"):
        export_checkpoint(trained, first, "cmd2")
    assert first.read_bytes() == good and first.with_suffix(".json").read_text() == sidecar
    with pytest.raises(ValueError, match=r"holds checkpoints its manifest does not list \(run.pt\)"):
        export_checkpoint(trained, trained.parent / "exp.pt", "cmd")
    assert not (trained.parent / "exp.pt").exists() and not (trained.parent / "MANIFEST.sha256").exists()


@pytest.mark.parametrize("bad", ["size", "labels"])
def test_voc_masks_that_do_not_fit_their_image_are_named(tmp_path, monkeypatch, bad):
    from tests.test_data_tasks import make_fake_voc
    monkeypatch.setenv("FILMMTL_CACHE", str(tmp_path / "cache"))
    make_fake_voc(tmp_path / "voc")
    seg = np.zeros((30, 30) if bad == "size" else (40, 50), np.uint8)
    seg[0, 0] = 7 if bad == "size" else 42
    png = Image.fromarray(seg, mode="P")
    png.putpalette([v for k in range(256) for v in (k, k, k)])
    png.save(tmp_path / "voc" / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "x1.png")
    match = r"mask is \(30, 30\) but its image is \(40, 50\)" if bad == "size" else r"mask labels \[42\] are not VOC's"
    with pytest.raises(ValueError, match=match):
        data.voc("test", 32, root=tmp_path / "voc")


@pytest.mark.parametrize("damage, match", [("string", "config of type str"),
                                           ("partial", r"partial config: \['batch_size'\]"),
                                           ("weights", "weights do not fit the network its config describes")])
def test_a_damaged_checkpoint_is_named(trained, tmp_path, damage, match):
    state = torch.load(trained, map_location="cpu", weights_only=True)
    if damage == "string":
        state["config"] = "proposed"
    elif damage == "partial":
        del state["config"]["batch_size"]
    else:
        key = next(k for k, v in state["model"].items() if v.dim() == 4)
        state["model"][key] = state["model"][key][:, :1]
    torch.save(state, tmp_path / "damaged.pt")
    with pytest.raises(ValueError, match=match):
        load_model(tmp_path / "damaged.pt")
    with pytest.raises(SystemExit, match=match):
        main(["evaluate", "--checkpoint", str(tmp_path / "damaged.pt"), "--seeds", "0"])


@pytest.mark.parametrize("variant", ["bom", "upper", "binary", "same twice"])
def test_manifests_as_sha256sum_writes_them_are_read(trained, tmp_path, variant):
    shipped = tmp_path / "shipped"
    export_checkpoint(trained, shipped / "a.pt", "cmd")
    manifest = shipped / "MANIFEST.sha256"
    digest = manifest.read_text().split()[0]
    line = {"bom": f"\ufeff{digest}  a.pt\n", "upper": f"{digest.upper()}  a.pt\n",
            "binary": f"{digest} *a.pt\n", "same twice": f"{digest}  a.pt\n" * 2}[variant]
    manifest.write_text(line)
    assert read_manifest(shipped) == {"a.pt": digest}
    load_model(shipped / "a.pt")


@pytest.mark.parametrize("damage, match", [
    ("conflict", r"lists a.pt twice with different digests \(lines 1 and 2\)"),
    ("folder", "MANIFEST.sha256 is not a file"), ("latin-1", r"MANIFEST.sha256 is not UTF-8 text")])
def test_a_damaged_manifest_is_named(trained, tmp_path, damage, match):
    shipped = tmp_path / "shipped"
    export_checkpoint(trained, shipped / "a.pt", "cmd")
    manifest = shipped / "MANIFEST.sha256"
    if damage == "conflict":
        manifest.write_text(manifest.read_text() + f"{'0' * 64}  a.pt\n")
    elif damage == "folder":
        manifest.unlink()
        manifest.mkdir()
    else:
        manifest.write_bytes(manifest.read_bytes() + "caf\xe9.pt".encode("latin-1"))
    with pytest.raises(ValueError, match=match):
        load_model(shipped / "a.pt")


@pytest.mark.parametrize("damage", ["truncated", "wrong shape", "not numpy"])
def test_a_damaged_scene_cache_is_built_again(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("FILMMTL_CACHE", str(tmp_path))
    good = data.embedded_scenes("val", 32, n=3)
    path = next(tmp_path.glob("scenes_*.npz"))
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "wrong shape":
        np.savez(path, images=np.zeros((3, 3, 16, 16), np.uint8), masks=np.zeros((3, 16, 16), np.uint8))
    else:
        path.write_text("hello")
    with pytest.warns(UserWarning, match="damaged or of another shape; it is built again"):
        again = data.embedded_scenes("val", 32, n=3)
    assert torch.equal(again.images, good.images) and torch.equal(again.masks, good.masks)
    assert torch.equal(data.embedded_scenes("val", 32, n=3).images, good.images)  # and the cache is whole again


def test_a_damaged_or_foreign_evaluation_cache_is_scored_again(tmp_path):
    from filmmtl.evaluate import evaluate_cached
    model = build("proposed", width=0.25).eval()
    space, jobs = TaskSpace(), ["reconstruction", "completion"]
    test = data.embedded_scenes("val", 32, n=2, cache=False)
    scores, cached = evaluate_cached(tmp_path, model, space, test, jobs)
    assert not cached and evaluate_cached(tmp_path, model, space, test, jobs)[1]
    path = next(tmp_path.glob("*.json"))
    for damage in (b"[]", b'{"reconstruction": {}}', b"\xff not json"):
        path.write_bytes(damage)
        again, cached = evaluate_cached(tmp_path, model, space, test, jobs)
        assert not cached and again == scores


def test_an_export_sidecar_that_is_not_json_names_the_fix(trained, tmp_path):
    trained.with_suffix(".json").write_text("{ half a json")
    with pytest.raises(SystemExit, match=r"run.json is not the JSON train writes .* pass --command"):
        main(["export", "--checkpoint", str(trained), "--out", str(tmp_path / "exports" / "x.pt")])
    assert not (tmp_path / "exports").exists()


@pytest.mark.parametrize("field", ["seed", "data_seed"])
@pytest.mark.parametrize("value", [2**64, -1])
def test_seeds_outside_what_the_generators_take_are_named(tmp_path, field, value):
    with pytest.raises(SystemExit, match=f"config field '{field}' must be an integer >= 0 <= {2**63 - 1}"):
        main(["train", "--profile", "smoke", "--out", str(tmp_path / "r.pt"), "--set", f"{field}={value}"])


def test_a_diverged_run_is_a_message_not_a_traceback(tmp_path):
    with pytest.raises(SystemExit, match=r"^error: the loss became .* the last good checkpoint is kept"):
        main(["train", "--profile", "smoke", "--quiet", "--steps", "2", "--out", str(tmp_path / "r.pt"),
              "--set", "max_loss=1e-9"])


def test_an_explorer_over_no_images_says_what_to_give():
    from filmmtl.explorer import Explorer
    with pytest.raises(ValueError, match="Explorer got 0 images"):
        Explorer(build("proposed", width=0.25), TaskSpace(), torch.zeros(0, 3, 32, 32))


def test_notebooks_into_a_file_is_named_before_any_notebook_runs(tmp_path):
    (tmp_path / "results").write_text("mine")
    with pytest.raises(SystemExit, match="results is a file; the notebooks' figures and tables go into a folder"):
        main(["notebooks", "--out", str(tmp_path / "results")])
    assert (tmp_path / "results").read_text() == "mine"


def test_the_field_table_is_the_one_source_of_config_fields():
    """Every field's default passes its own check and every profile's values pass theirs; the base config,
    the fields a load and a resume compare, and the fields old checkpoints lack all come from the table."""
    from filmmtl.config import ADDED_FIELDS, ARCHITECTURE, BASE, FIELDS, RESUMABLE, model_options
    from filmmtl.profiles import PROFILES, make_config
    assert list(BASE) == list(FIELDS)
    for name, field in FIELDS.items():
        assert field.check[0](field.default), f"{name}'s default fails its own check"
        assert field.kind in ("architecture", "training", "runtime", "derived"), name
    for profile in PROFILES:
        assert set(make_config(profile)) == set(FIELDS) | {"profile"}
    assert set(ARCHITECTURE) & set(RESUMABLE) == set() and set(ADDED_FIELDS) <= set(FIELDS)
    assert set(model_options(make_config("smoke"))) == {"width", "input_skip", "feature_skips", "output_scale",
                                                         "output_gate", "generator_layers", "generator_init_std",
                                                         "skip_gate"}
    assert set(model_options(make_config("smoke", model="single"))) == {"width", "input_skip", "feature_skips",
                                                                        "output_scale", "output_gate"}
