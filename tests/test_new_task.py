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
