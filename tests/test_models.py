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


def randomised(model, seed=3):
    """The model with random FiLM parameters (and weights), so that no test passes by the identity."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("name", ["proposed", "johnson", "sgn"])
def test_literal_paper_network_is_blind_to_input_colour_and_contrast(name):
    """The first instance norm removes any per-channel offset b and any positive contrast scale a of the
    input (the first convolution is linear: its output shifts by a constant per channel and scales by a):
    the paper's network (no output-layer departure) gives the same output for a*x + b as for x."""
    model = randomised(build(name, width=0.25, input_skip=False))
    x = torch.rand(2, 3, 32, 32)
    a, b = 0.6, torch.tensor([0.2, -0.1, 0.3]).view(1, 3, 1, 1)
    c = torch.eye(6)[:2]
    with torch.no_grad():
        assert torch.allclose(model(a * x + b, c), model(x, c), atol=1e-3)  # up to instance norm's eps
        # ... whereas the input skip gives the colour back
        skip = randomised(build(name, width=0.25))
        assert (skip(a * x + b, c) - skip(x, c)).abs().mean() > 0.05


def test_std_scaled_output_is_equivariant_to_input_colour_and_contrast():
    """output_scale='std': model(a*x + b) = a*model(x) + b, so one correction fits all contrasts."""
    model = randomised(build("proposed", width=0.25, feature_skips=(0, 1), output_scale="std"))
    x = torch.rand(2, 3, 32, 32)
    a, b = 0.6, torch.tensor([0.2, -0.1, 0.3]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(a * x + b, torch.eye(6)[:2]), a * model(x, torch.eye(6)[:2]) + b, atol=1e-3)


@pytest.mark.parametrize("name", ["proposed", "encin", "johnson", "sgn", "sgn_bias", "single", "sharedenc"])
def test_design_options_add_no_parameters(name):
    plain = count_parameters(build(name, width=0.5, input_skip=False))
    designed = build(name, width=0.5, feature_skips=(0, 1), output_scale="std")
    assert count_parameters(designed) == plain
    assert designed(torch.rand(1, 3, 20, 28), torch.eye(6)[1]).shape == (1, 3, 20, 28)


def test_feature_skips_carry_fine_detail():
    """With skip 0 the full-resolution features reach the output layer: gradients of the output reach the
    first layer through a path that bypasses the bottleneck, so the output depends on the first layer even
    when the bottleneck's contribution is zeroed."""
    torch.manual_seed(0)
    model = build("proposed", width=0.25, feature_skips=(0,))
    with torch.no_grad():
        for i in (13, 14):
            model.backbone.convs[i].conv.weight.zero_()
            model.backbone.convs[i].conv.bias.zero_()
    x = torch.rand(1, 3, 32, 32)
    assert (model(x, torch.zeros(6)) - x).abs().mean() > 1e-3
    no_skip = build("proposed", width=0.25)
    no_skip.load_state_dict(model.state_dict())
    assert torch.allclose(no_skip(x, torch.zeros(6)), x + no_skip.backbone.last.conv.bias.view(1, 3, 1, 1), atol=1e-6)


def test_gated_skip_starts_shut_and_each_task_opens_its_own():
    """skip_gate: the skip's FiLM site starts at gamma = beta = 0 (c = 0 gives exactly the network without
    the skip), and what one task's column opens leaves every other task's output unchanged."""
    torch.manual_seed(0)
    model = randomised(build("proposed", width=0.25, feature_skips=(0,), skip_gate=True, output_scale="std"))
    last, n = model.generator.mlp[-1], model.generator.n_channels  # gamma rows [0, n), beta rows [n, 2n)
    skip_gamma = torch.arange(model.offsets["skip0"], n)  # the last 8 channels of each half
    layers = torch.cat([torch.arange(0, skip_gamma[0]), torch.arange(n, n + skip_gamma[0])])
    with torch.no_grad():
        last.bias[torch.cat([skip_gamma, skip_gamma + n])] = 0.0
    x, tasks = torch.rand(2, 3, 32, 32), torch.eye(6)
    no_skip = build("proposed", width=0.25, output_scale="std")
    no_skip.load_state_dict({k: v for k, v in model.state_dict().items() if "generator" not in k}, strict=False)
    with torch.no_grad():
        no_skip.generator.mlp[-1].weight.copy_(last.weight[layers])
        no_skip.generator.mlp[-1].bias.copy_(last.bias[layers])
        assert torch.allclose(model(x, torch.zeros(6)), no_skip(x, torch.zeros(6)), atol=1e-6)
        before = torch.stack([model(x, c) for c in tasks])
        last.weight[skip_gamma, 2] += 1.0  # restoration opens its skip
        after = torch.stack([model(x, c) for c in tasks])
    assert (after[2] - before[2]).abs().mean() > 1e-3
    assert torch.equal(after[[0, 1, 3, 4, 5]], before[[0, 1, 3, 4, 5]])
    assert set(model.film_by_layer(tasks[2])) == set(range(15)) | {"skip0"}


@pytest.mark.parametrize("width, channels", [(1.0, 32), (0.5, 16)])
def test_gated_skip_costs_a_film_site_of_parameters(width, channels):
    """(tasks + 1) x 2 x channels: the generator's weights and biases for the skip's gamma and beta."""
    gated = build("proposed", width=width, feature_skips=(0,), skip_gate=True)
    assert count_parameters(gated) - count_parameters(build("proposed", width=width)) == 7 * 2 * channels


def test_small_generator_init_starts_every_task_near_identity():
    model = build("proposed", width=0.5, generator_init_std=0.01)
    gamma, beta = model.film(torch.eye(6))
    assert (gamma - 1).abs().max() < 0.06 and beta.abs().max() < 0.06
    default = build("proposed", width=0.5)
    assert (default.film(torch.eye(6))[0] - 1).abs().max() > 0.3


@pytest.mark.parametrize("options, match", [(dict(feature_skips=(2,)), "feature_skips takes encoder layers"),
                                            (dict(output_scale="max"), "output_scale must be one of"),
                                            (dict(output_scale="std", input_skip=False), "needs input_skip"),
                                            (dict(skip_gate=True), "skip_gate modulates the feature skips")])
def test_bad_design_options_are_named(options, match):
    with pytest.raises(ValueError, match=match):
        build("proposed", width=0.25, **options)


def test_output_gate_paints_absolute_colours_or_keeps_the_input():
    """The gate's two ends: a = 0 paints the absolute output d whatever the input's colour (what instance
    norm alone cannot do), a = 1 keeps the input plus its correction."""
    model = build("proposed", width=0.25, output_gate=True, output_scale="std")
    last = model.backbone.last.conv
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0, 0, 0, 1.0, 0, 1.0, -30]))  # d = magenta, a = sigmoid(-30)
        assert torch.allclose(model(x, torch.eye(6)[:2]), torch.tensor([1.0, 0, 1.0]).view(1, 3, 1, 1).expand_as(x),
                              atol=1e-6)
        last.bias[6] = 30.0  # a = 1: the input, unchanged (r = 0)
        assert torch.allclose(model(x, torch.eye(6)[:2]), x, atol=1e-6)


@pytest.mark.parametrize("width, extra", [(1.0, 10_372), (0.5, 5_188)])
def test_output_gate_is_the_only_departure_with_parameters(width, extra):
    """4 more output channels of the last 9x9 convolution: 4 x (channels x 81 + 1)."""
    gated = count_parameters(build("proposed", width=width, output_gate=True))
    assert gated - count_parameters(build("proposed", width=width)) == extra
    assert count_parameters(build("proposed")) == 1_698_435  # the paper's count with the gate off


def test_the_backbone_runs_its_declared_layer_plan():
    """ENCODER, RESIDUAL_PAIRS and DECODER are what forward runs, in order, and what the FiLM network
    modulates: the rest of the package reads the plan instead of counting to 15."""
    from filmmtl.backbone import DECODER, ENCODER, LAYERS, RESIDUAL_PAIRS, Backbone
    seen = []

    def record(i, h, norm):
        seen.append(i)
        return norm(h)
    Backbone(0.25)(torch.rand(1, 3, 16, 16), record)
    assert tuple(seen) == LAYERS == ENCODER + sum(RESIDUAL_PAIRS, ()) + DECODER
    assert build("proposed", width=0.25).film_layers == LAYERS
    assert build("encin", width=0.25).film_layers == LAYERS[len(ENCODER):]
