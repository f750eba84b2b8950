"""A seventh task in one generator column: the old tasks untouched to the bit, only the column trained."""
import pytest
import torch

from filmmtl.data import embedded_scenes
from filmmtl.models import build
from filmmtl.new_task import column_size, fit_new_task, with_task
from filmmtl.tasks import TaskSpace


@pytest.fixture(scope="module")
def scenes():
    return embedded_scenes("train", 32, n=16, cache=False)


def test_a_new_task_starts_as_the_identity_and_costs_one_column():
    model, space = build("proposed", width=0.25).eval(), TaskSpace()
    grown, grown_space = with_task(model, space, "super_resolution")
    x = torch.rand(2, 3, 32, 32)
    assert grown_space.keys[-1] == "super_resolution" and grown.n_tasks == 7
    assert column_size(grown) == 2 * sum(model.site_channels.values())
    assert column_size(build("proposed")) == 3200  # the paper's width: 1,600 channels, a gamma and a beta each
    with torch.no_grad():
        for key in space:
            assert torch.equal(grown(x, grown_space.vector(key)), model(x, space.vector(key)))
        assert torch.equal(grown(x, grown_space.vector("super_resolution")), model(x, space.vector("reconstruction")))


def test_training_the_column_moves_it_alone_and_lowers_the_loss(scenes):
    torch.manual_seed(0)
    model, space = build("proposed", width=0.25).eval(), TaskSpace()
    grown, grown_space = with_task(model, space, "super_resolution")
    before = {k: v.clone() for k, v in grown.state_dict().items()}
    losses = fit_new_task(grown, grown_space, "super_resolution", scenes, steps=30, lr=1e-2, batch_size=4)
    changed = [k for k, v in grown.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == ["generator.mlp.0.weight"]
    weight, old = grown.generator.mlp[0].weight, before["generator.mlp.0.weight"]
    assert torch.equal(weight[:, :-1], old[:, :-1]) and not torch.equal(weight[:, -1], old[:, -1])
    assert sum(losses[-5:]) < sum(losses[:5])
    assert all(p.requires_grad for p in grown.parameters()) and not grown.training
    weight.grad = None
    weight.sum().backward()  # the training hook is gone: every column gets its gradient again
    assert torch.equal(weight.grad, torch.ones_like(weight))


def test_fine_tuning_everything_moves_the_old_tasks_and_bad_requests_are_named(scenes):
    torch.manual_seed(0)
    model, space = build("proposed", width=0.25).eval(), TaskSpace()
    grown, grown_space = with_task(model, space, "super_resolution")
    fit_new_task(grown, grown_space, "super_resolution", scenes, steps=3, what="all", batch_size=4)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.equal(grown(x, grown_space.vector("restoration")), model(x, space.vector("restoration")))
    with pytest.raises(ValueError, match="already has the task 'restoration'"):
        with_task(model, space, "restoration")
    with pytest.raises(ValueError, match="not a registered task with a target image"):
        with_task(model, space, "deblurring")
    with pytest.raises(TypeError, match="needs a FiLM network"):
        with_task(build("johnson", width=0.25), space, "super_resolution")
    with pytest.raises(ValueError, match="'column' or 'all'"):
        fit_new_task(grown, grown_space, "super_resolution", scenes, steps=1, what="bias")


@pytest.fixture
def inversion():
    """A seventh task and a mix of it, registered here and nowhere else (and removed after the test)."""
    from filmmtl.tasks import MIXES, TASKS, Mix, Task, register, register_mix
    calls = {"loss": 0}

    def inverted_l1(output, target):  # the task's own loss, counted so the test sees training use it
        calls["loss"] += 1
        return (output - target).abs().mean()

    def brightness_error(output, target):
        return (output.mean(dim=(1, 2, 3)) - target.mean(dim=(1, 2, 3))).abs()
    register(Task("inversion", "colour inversion", "色反転", (inverted_l1,), ("psnr", brightness_error),
                  make_target=lambda images, masks: 1 - images))
    register_mix(Mix(("inversion", "segmentation"), "masking"))
    yield calls
    TASKS.pop("inversion"), MIXES.pop("inversion+segmentation")


def test_a_seventh_task_is_one_registration_trained_scored_and_drawn(inversion):
    """Registered in this test alone: training uses its loss, scoring its metrics (and only those), the
    figures draw it, and a mix of it trains by method 3 and is scored like the paper's mixes."""
    import matplotlib.pyplot as plt

    from filmmtl import plots
    from filmmtl.evaluate import evaluate
    from filmmtl.tasks import PAPER_TASKS
    from filmmtl.train import Trainer
    tasks = list(PAPER_TASKS) + ["inversion"]
    trainer = Trainer(profile="smoke", quiet=True, tasks=tasks, mixes=["inversion+segmentation"], method=3,
                      task_weights={"inversion": 50.0, "inversion+segmentation": 50.0}, steps=6)
    trainer.fit()
    trained = {h["job"] for h in trainer.history if "loss" in h}
    assert {"inversion", "inversion+segmentation"} <= trained and inversion["loss"] > 0
    assert trainer.model.n_tasks == 7
    scores = evaluate(trainer.model, trainer.space, trainer.val_set, ["inversion", "inversion+segmentation"])
    assert set(scores["inversion"]) == {"psnr", "brightness_error", "input_psnr", "input_brightness_error"}
    assert {"teacher_l2", "iou", "psnr"} <= set(scores["inversion+segmentation"])
    images, masks = trainer.val_set.batch(torch.arange(2))
    fig = plots.task_grid(images, masks, trainer.space, mixes=["inversion+segmentation"])
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert any(label.startswith("inversion\n") for label in labels) and len(fig.axes) == 8 * 4
    plt.close(fig)


def test_a_task_listing_an_unknown_loss_or_metric_is_refused_by_name():
    from filmmtl.evaluate import check_metrics
    from filmmtl.objective import main_loss
    from filmmtl.tasks import TASKS, Mix, Task, register_mix
    from filmmtl.train import Trainer
    odd = Task("odd", "odd", "", ("l1",), ("psnr", "sharpness"))
    with pytest.raises(ValueError, match=r"'odd' lists losses \('l1',\).*'l2', 'perceptual'"):
        main_loss(odd)
    TASKS["odd"] = odd
    try:
        with pytest.raises(ValueError, match=r"unknown metrics \['sharpness'\]"):
            check_metrics(["odd"])
        with pytest.raises(ValueError, match="lists losses"):  # refused before the first step
            Trainer(profile="smoke", quiet=True, tasks=["reconstruction", "odd"])
    finally:
        TASKS.pop("odd")
    with pytest.raises(ValueError, match="'masking' needs segmentation"):
        register_mix(Mix(("restoration", "completion"), "masking"))
    with pytest.raises(ValueError, match="already registered"):
        register_mix(Mix(("restoration", "style_gogh"), "sequential"))
