"""The interactive explorer driven headlessly, and the notebooks' checkpoint policy."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from filmmtl import session as session_module
from filmmtl.session import estimate_training_seconds
from filmmtl.evaluate import job_inputs
from filmmtl.explorer import Explorer, image_png
from filmmtl.models import build
from filmmtl.tasks import TaskSpace


@pytest.fixture
def explorer():
    torch.manual_seed(0)
    model = build("proposed", width=0.25)
    with torch.no_grad():
        model.generator.mlp[0].weight.normal_(0, 0.5)
    images = torch.rand(3, 3, 32, 32)
    return Explorer(model, TaskSpace(), images, mixes=["restoration+style_gogh"], display_size=32)


def decode(png_bytes):
    return np.asarray(Image.open(io.BytesIO(png_bytes)))


def test_moving_a_slider_updates_the_image_with_the_models_output(explorer):
    before = explorer.output_view.value
    explorer.sliders["style_gogh"].value = 0.75
    explorer.image_choice.value = 2
    c = torch.tensor([0, 0, 0, 0, 0.75, 0])
    assert torch.equal(explorer.vector(), c)
    with torch.no_grad():
        expected = explorer.model(explorer.images[2:3], c)[0].clamp(0, 1)
    assert explorer.output_view.value != before
    assert np.array_equal(decode(explorer.output_view.value), decode(image_png(expected, 32)))


def test_mix_slider_adds_the_mixed_vector_and_film_view_changes(explorer):
    film_before = explorer.film_view.value
    explorer.mix.value = "restoration+style_gogh"
    explorer.mix_strength.value = 0.5
    assert explorer.vector().tolist() == [0, 0, 0.5, 0, 0.5, 0]
    assert explorer.film_view.value != film_before


@pytest.mark.parametrize("version", [7, 8])
def test_upload_replaces_the_test_image(explorer, version):
    """ipywidgets 8: a tuple of dicts with memoryview content; 7 (Colab's): {name: dict} with bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(buffer, format="PNG")
    value = ({"name": "mine.png", "content": memoryview(buffer.getvalue())},) if version == 8 else \
        {"mine.png": {"metadata": {"name": "mine.png"}, "content": buffer.getvalue()}}
    explorer.on_upload({"new": value})
    assert explorer.uploaded.shape == (3, 32, 32)
    assert decode(explorer.input_view.value).mean() == pytest.approx(200, abs=1)


def test_a_restoration_slider_feeds_the_network_a_noisy_image(explorer):
    """Restoring the clean image would show nothing: the slider selects restoration's own degraded input."""
    explorer.image_choice.value = 1
    explorer.sliders["restoration"].value = 1.0
    assert explorer.degradation.value == "restoration"
    noisy = job_inputs("restoration", explorer.images[1:2])[0]
    assert not torch.equal(noisy, explorer.images[1:2])
    assert np.array_equal(decode(explorer.input_view.value), decode(image_png(noisy[0], 32)))
    with torch.no_grad():
        expected = explorer.model(noisy, explorer.vector())[0].clamp(0, 1)
    assert np.array_equal(decode(explorer.output_view.value), decode(image_png(expected, 32)))
    explorer.sliders["completion"].value = 0.5  # an input is already chosen: the menu stays
    assert explorer.degradation.value == "restoration"


def test_reset_returns_every_control_to_the_start(explorer):
    start = explorer.output_view.value, explorer.input_view.value
    explorer.image_choice.value = 2
    explorer.sliders["style_munch"].value = 0.6
    explorer.sliders["completion"].value = 1.0
    explorer.mix.value, explorer.mix_strength.value = "restoration+style_gogh", 0.3
    explorer.reset()
    assert explorer.vector().tolist() == [0] * 6
    assert (explorer.degradation.value, explorer.mix.value, explorer.image_choice.value) == \
        ("clean image", "(no mix)", 0)
    assert (explorer.output_view.value, explorer.input_view.value) == start
    assert explorer.timing.value.startswith("output in ") and explorer.seconds > 0


def test_static_grid_has_a_row_per_task_and_mix(explorer):
    fig = explorer.static_grid(strengths=(0.0, 1.0))
    assert len(fig.axes) == (5 + 1) * 2


def test_export_writes_fp16_and_manifest_and_session_verifies(tmp_path, monkeypatch):
    from filmmtl.train import Trainer
    from filmmtl.profiles import RECIPES
    trainer = Trainer(profile="smoke", quiet=True, steps=1, eval_every=0, **RECIPES["proposed"]).fit()
    source = trainer.save(tmp_path / "run.pt")
    shipped = tmp_path / "shipped"
    target = session_module.export_checkpoint(source, shipped / "proposed.pt", "python -m filmmtl train ...")
    state = torch.load(target, weights_only=True)
    assert all(v.dtype == torch.float16 for v in state["model"].values() if v.is_floating_point())
    monkeypatch.setattr(session_module, "SHIPPED", shipped)
    # A smoke-sized network does not load into a course session (width 0.25 vs 0.5) ...
    with pytest.raises(ValueError, match=r"another network.*width: checkpoint 0.25 vs requested 0.5"):
        session_module.Session("course", output_dir=tmp_path / "out").network("proposed")
    # ... into a session of its own shape it does, from the file, without training.
    course = session_module.Session("course", output_dir=tmp_path / "out")
    course.config.update(n_test=4, width=0.25, size=32)
    model, cfg, provenance, history = course.network("proposed")
    assert cfg["profile"] == "smoke" and history == trainer.history  # the shipped file, not a new training
    target.write_bytes(target.read_bytes() + b"tampered")
    with pytest.raises(ValueError, match="does not match"):
        session_module.Session("course", output_dir=tmp_path / "out").network("proposed")


def test_exported_piggyback_keeps_its_binary_masks(tmp_path):
    from filmmtl.train import Trainer, load_model
    base = Trainer(profile="smoke", quiet=True, model="johnson", steps=1).fit()
    base.save(tmp_path / "base.pt")
    piggy = Trainer(profile="smoke", quiet=True, model="piggyback", base_checkpoint=str(tmp_path / "base.pt"), steps=2)
    with torch.no_grad():
        piggy.model.masks[0].uniform_(0.0, 0.01)  # scores on both sides of the threshold
    source = piggy.fit().save(tmp_path / "piggy.pt")
    target = session_module.export_checkpoint(source, tmp_path / "shipped" / "piggy.pt", "test")
    shipped, _, _ = load_model(target)
    x = torch.rand(2, 3, 32, 32)
    c = torch.eye(6)[[0, 3]]
    with torch.no_grad():
        assert torch.allclose(shipped(x, c), piggy.model.eval()(x, c), atol=2e-2)
    assert set(torch.load(target, weights_only=True)["model"]["masks.0"].unique().tolist()) <= {0.0, 1.0}


def test_a_gpu_session_loads_shipped_networks_and_never_trains_unasked(monkeypatch, tmp_path):
    """On a machine that reports CUDA, profile='auto' with retrain=False is the course profile and loads
    the shipped networks; 'paper' has none and says so at once, with the command, instead of training."""
    from filmmtl import profiles, train
    monkeypatch.delenv("FILMMTL_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(train, "resolve_device", lambda name="auto": torch.device("cpu"))
    monkeypatch.setattr(session_module, "resolve_device", lambda name="auto": torch.device("cpu"))
    monkeypatch.setattr(train.Trainer, "fit", lambda *a, **k: pytest.fail("a notebook trained without retrain=True"))
    assert profiles.resolve_profile("auto") == "paper"  # what training on a GPU would use ...
    session = session_module.Session("auto", output_dir=tmp_path)
    assert session.profile == "course"                  # ... but a notebook loads the shipped networks
    model, cfg, _, _ = session.network("proposed")
    assert cfg["profile"] == "course" and not model.training
    monkeypatch.setattr(session_module, "estimate_training_seconds", lambda config, device: 7200.0)
    with pytest.raises(session_module.NoShippedNetwork, match=r"(?s)about 2.0 h.*retrain=True.*--profile paper"):
        session_module.Session("paper", output_dir=tmp_path).network("proposed")


def test_retrain_checkpoints_under_the_output_folder_resumes_and_reuses(monkeypatch, tmp_path):
    from filmmtl import profiles
    monkeypatch.delenv("FILMMTL_PROFILE", raising=False)
    small = dict(profiles.PROFILES["smoke"], checkpoint_every=3, steps=12)
    monkeypatch.setitem(profiles.PROFILES, "paper", small)  # a tiny 'paper' profile
    session = session_module.Session("paper", retrain=True, output_dir=tmp_path, quiet=True)
    path = session.trained_here("proposed")
    trainer = session.trainer("proposed")
    trainer.fit(steps=6, checkpoint=path)  # a run cut off half-way (a disconnected runtime)
    model, cfg, _, history = session.network("proposed")
    assert torch.load(path, weights_only=True)["step"] == 12 and history[:6] == trainer.history[:6]
    later = session_module.Session("paper", retrain=True, output_dir=tmp_path, quiet=True)  # the next notebook
    monkeypatch.setattr(session_module.Trainer, "fit", lambda *a, **k: pytest.fail("trained again"))
    assert later.network("proposed")[3] == history


def test_training_time_estimate_is_measured():
    from filmmtl.profiles import make_config
    seconds = estimate_training_seconds(make_config("smoke", steps=100), torch.device("cpu"))
    assert 0 < seconds < 100 * 5


def test_an_upload_that_is_not_an_image_is_named_in_the_widget(explorer):
    before = explorer.input_view.value
    explorer.on_upload({"new": ({"name": "notes.txt", "content": memoryview(b"not a picture")},)})
    assert "notes.txt is not an image" in explorer.upload_status.value
    assert explorer.uploaded is None and explorer.input_view.value == before


def test_film_view_centres_each_site_at_its_identity():
    """White means the identity of each site (gamma 1, beta 0; a gated skip's gamma 0, shut), so an
    untouched site reads white and a raised gamma red, whatever row it is in."""
    import io

    import numpy as np
    from PIL import Image

    from filmmtl.explorer import film_png
    identity = {0: (torch.ones(8), torch.zeros(8)), 1: (torch.ones(16), torch.zeros(16)),
                "skip0": (torch.zeros(8), torch.zeros(8))}
    raised = {**identity, 1: (torch.full((16,), 2.0), torch.zeros(16))}

    def cells(sites):  # the two panels' pixels, without labels, titles and colour bar
        image = np.asarray(Image.open(io.BytesIO(film_png(sites, cell=4, row=12))).convert("RGB")).astype(int)
        return image[14:14 + 12 * len(sites), 52:]
    plain, red = cells(identity), cells(raised)
    assert (plain == 255).all()
    row1 = red[12:22, :16 * 4]  # layer 1's gamma strip
    assert (row1[..., 0] == 255).all() and (row1[..., 2] == 0).all()
    assert (red[:12] == 255).all() and (red[24:] == 255).all()  # the other sites stay white
