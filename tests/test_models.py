"""The paper's network: exact size, identity at init, per-sample vectors, any size, clear errors."""
import pytest
import torch

from filmmtl.models import build, count_parameters


@pytest.fixture(scope="module")
def proposed():
    torch.manual_seed(0)
    return build("proposed")


@pytest.mark.parametrize("name, expected", [("proposed", 1_698_435), ("johnson", 1_679_235),
                                            ("encin", 1_695_747)])
def test_paper_parameter_counts(name, expected):
    assert count_parameters(build(name, n_tasks=6)) == expected


def test_film_count_grows_with_task_vector_only():
    assert count_parameters(build("proposed", n_tasks=7)) - count_parameters(build("proposed")) == 3200


def test_zero_vector_is_identity_modulation(proposed):
    layers = proposed.film_by_layer(torch.zeros(6))
    assert len(layers) == 15
    assert sum(g.shape[1] for g, _ in layers.values()) == 1600
    for gamma, beta in layers.values():
        assert torch.equal(gamma, torch.ones_like(gamma)) and torch.equal(beta, torch.zeros_like(beta))


def test_untrained_network_is_plain_instance_norm_network():
    torch.manual_seed(1)
    film = build("proposed", width=0.25)
    plain = build("johnson", width=0.25)
    # Copy the convolutions; the plain network's IN affine starts at weight 1, bias 0.
    plain.backbone.load_state_dict(film.backbone.state_dict(), strict=False)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(film(x, torch.zeros(6)), plain(x, torch.zeros(6)), atol=1e-6)


def test_per_sample_vectors_equal_separate_runs(proposed):
    torch.manual_seed(2)
    with torch.no_grad():  # make the generator non-trivial so the tasks differ
        proposed.generator.mlp[0].weight.normal_(0, 0.3)
    x = torch.rand(3, 3, 24, 24)
    c = torch.tensor([[0, 1, 0, 0, 0, 0], [0, 0, 0, 0.5, 0, 0.5], [0, 0, 0, 0, 0, 0]], dtype=torch.float32)
    together = proposed(x, c)
    apart = torch.cat([proposed(x[i:i + 1], c[i]) for i in range(3)])
    assert torch.allclose(together, apart, atol=1e-5)
    assert not torch.allclose(together[0], together[2], atol=1e-3)


def test_supplied_film_parameters_equal_task_vector(proposed):
    x = torch.rand(2, 3, 20, 20)
    c = torch.tensor([0, 0, 1.0, 0, 0, 0])
    assert torch.allclose(proposed(x, c), proposed(x, film=proposed.film(c)), atol=1e-6)


@pytest.mark.parametrize("size", [(16, 16), (17, 23), (31, 64), (50, 19)])
def test_any_size_at_least_16(size):
    model = build("proposed", width=0.25)
    assert model(torch.rand(1, 3, *size), torch.zeros(6)).shape == (1, 3, *size)


def test_width_multiplier_shrinks_network():
    assert count_parameters(build("proposed", width=0.5)) < count_parameters(build("proposed")) / 3


def test_gradients_reach_film_generator(proposed):
    proposed.zero_grad()
    x = torch.rand(2, 3, 16, 16)
    proposed(x, torch.tensor([0, 1.0, 0, 0, 0, 0])).square().mean().backward()
    grad = proposed.generator.mlp[0].weight.grad
    assert grad is not None and grad[:, 1].abs().sum() > 0
    assert grad[:, 2].abs().sum() == 0  # an unused task receives nothing


@pytest.mark.parametrize("x, c, match", [
    (torch.rand(1, 3, 32, 32), torch.zeros(5), r"shape \(6,\) or \(B, 6\)"),
    (torch.rand(1, 3, 32, 32), torch.tensor([0, float("nan"), 0, 0, 0, 0]), "finite"),
    (torch.rand(1, 3, 32, 32), torch.zeros(3, 6), "3 task vectors for a batch of 1"),
    (torch.rand(1, 1, 32, 32), torch.zeros(6), "3 RGB channels"),
    (torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8), torch.zeros(6), r"x.float\(\) / 255"),
    (torch.rand(1, 3, 8, 32), torch.zeros(6), "at least 16x16"),
    (torch.rand(3, 32, 32), torch.zeros(6), r"\(B, 3, H, W\)"),
])
@pytest.mark.parametrize("name", ["proposed", "johnson"])
def test_bad_input_names_the_expected_form(name, x, c, match):
    model = build(name, width=0.25)
    with pytest.raises((ValueError, TypeError), match=match):
        model(x, c)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="choose one of"):
        build("resnet")
