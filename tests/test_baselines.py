"""Table 2's baselines: exact sizes, task routing, Piggyback's masks, and the evaluation harness."""
import pytest
import torch

from filmmtl.baselines import MASK_THRESHOLD, PiggybackNet
from filmmtl.tables import COLUMNS, paper_table, table2, write_table2
from filmmtl.models import build, count_parameters
from filmmtl.profiles import RECIPES

PAPER_SIZES = {"proposed": 1_698_435, "encin": 1_695_747, "sgn": 1_765_363, "sgn_bias": 1_902_243,
               "piggyback": 1_688_835, "single": 10_075_410, "sharedenc": 9_572_370, "johnson": 1_679_235}


@pytest.mark.parametrize("name", list(PAPER_SIZES))
def test_the_eight_paper_sizes_are_exact(name):
    assert count_parameters(build(name, n_tasks=6)) == PAPER_SIZES[name]


def test_paper_table_sizes_agree_with_ours():
    sizes = paper_table()[("model_size", "parameters")]
    for recipe, column in COLUMNS.items():
        assert sizes[column] == PAPER_SIZES[RECIPES[recipe].get("model", "proposed")]


@pytest.mark.parametrize("name", ["sgn", "sgn_bias", "single", "sharedenc", "piggyback"])
def test_per_sample_tasks_equal_separate_runs(name):
    model = build(name, width=0.25)
    x = torch.rand(4, 3, 24, 24)
    c = torch.zeros(4, 6)
    c[1, 2] = c[2, 4] = c[3, 2] = 1
    with torch.no_grad():
        together = model(x, c)
        apart = torch.cat([model(x[i:i + 1], c[i]) for i in range(4)])
    assert torch.allclose(together, apart, atol=1e-5)


@pytest.mark.parametrize("name", ["single", "sharedenc", "piggyback"])
def test_networks_that_cannot_mix_say_so(name):
    model = build(name, width=0.25)
    with pytest.raises(ValueError, match="one task at a time"):
        model(torch.rand(1, 3, 16, 16), torch.tensor([0, 0, 1.0, 0, 1.0, 0]))
    with pytest.raises(ValueError, match="one task at a time"):
        model(torch.rand(1, 3, 16, 16), torch.tensor([0, 0, 0.5, 0, 0, 0]))


def test_sharedenc_shares_only_the_encoder():
    model = build("sharedenc", width=0.25)
    assert model.nets[0].convs[0] is model.nets[5].convs[0] and model.nets[0].norms[2] is model.nets[3].norms[2]
    assert model.nets[0].convs[3] is not model.nets[1].convs[3]


def test_piggyback_starts_as_its_base_and_trains_only_masks_and_scales():
    base = build("johnson", width=0.25)
    with torch.no_grad():
        for norm in base.backbone.norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_()
    piggy = PiggybackNet(6, width=0.25)
    piggy.load_base(base.state_dict())
    x = torch.rand(2, 3, 20, 20)
    c = torch.eye(6)[[1, 3]]
    assert torch.allclose(piggy(x, c), base(x, c), atol=1e-5)  # masks start all on (1e-2 > 5e-3)
    piggy(x, c).square().mean().backward()
    assert all(p.grad is None for p in piggy.backbone.parameters())
    assert piggy.scales.grad[1].abs().sum() > 0 and piggy.scales.grad[0].abs().sum() == 0
    n = len(piggy.mask_names)
    assert piggy.masks[n].grad.abs().sum() > 0 and piggy.masks[0].grad is None
    with torch.no_grad():
        piggy.masks[n].fill_(MASK_THRESHOLD / 2)  # task 1's first mask off: that conv's weights vanish
    assert not torch.allclose(piggy(x, c)[0], base(x, c)[0], atol=1e-3)


def test_table2_has_every_paper_row_and_both_numbers(tmp_path):
    results = {r: {"reconstruction": {"psnr": 30.0, "ssim": 0.9, "input_psnr": 99.0}, "style_gogh": {"gram": 1.0}}
               for r in COLUMNS}
    results["proposed_compared"]["style_gogh"]["fid"] = 123.4
    rows = table2(results, {r: 1000 + i for i, r in enumerate(COLUMNS)}, {"fid_network": "unavailable"})
    assert len(rows) == len(paper_table()) == 18
    recon = rows[0]
    assert recon["row"] == "task0_reconstruction" and recon["Proposed"] == 30.0 and recon["Proposed (paper)"] == 8.514
    gogh = next(r for r in rows if r["row"] == "task4_style_gogh")
    assert gogh["Proposed"] == 123.4 and gogh["EncIN"] == "unavailable"
    text = write_table2(rows, tmp_path, {"profile": "smoke", "fid_network": "unavailable"})
    assert recon["input unchanged"] == 99.0 and rows[1]["input unchanged"] is None  # SSIM: not scored here
    assert text.startswith("provenance: profile=smoke") and "30 (8.514)" in text
    assert "| input unchanged |" in text.splitlines()[4] and text.splitlines()[6].endswith("| 99 |")
    assert (tmp_path / "table2.csv").read_text().startswith("# provenance: profile=smoke")


@pytest.mark.parametrize("name", sorted(PAPER_SIZES))
def test_the_literal_design_switches_back_to_the_papers_exact_sizes(name):
    """Every departure off (profiles.LITERAL): the eight networks built from a paper-profile config have the
    paper's parameter counts; the project's default design adds only the output gate's 4 channels."""
    from filmmtl.profiles import LITERAL, make_config
    from filmmtl.checkpoints import model_from_config
    literal = model_from_config(make_config("paper", model=name, **LITERAL))
    assert count_parameters(literal) == PAPER_SIZES[name]
    default = model_from_config(make_config("paper", model=name))
    gates = {"single": 6, "sharedenc": 6}.get(name, 1) * 10_372 * make_config("paper")["output_gate"]
    assert count_parameters(default) == PAPER_SIZES[name] + gates


@pytest.mark.parametrize("name", ["sgn", "sgn_bias", "piggyback"])
def test_each_baseline_gates_its_skip_per_task_through_its_own_conditioning(name):
    """The design's gated skip in a baseline: what one task's gate does leaves every other task's output
    unchanged. SGN's gate (an attention module of its own) starts nearly shut, as FiLM's does; Piggyback's
    (a per-task scale) starts open, where its base left it."""
    torch.manual_seed(0)
    model = build(name, width=0.25, feature_skips=(0,), skip_gate=True)
    ungated = build(name, width=0.25, feature_skips=(0,))
    shut = build(name, width=0.25)
    for other in (ungated, shut):
        other.load_state_dict(model.state_dict(), strict=False)
    x, tasks = torch.rand(6, 3, 24, 24), torch.eye(6)
    with torch.no_grad():
        before = model(x, tasks)
        start_like = ungated if name == "piggyback" else shut
        assert (before - start_like(x, tasks)).abs().max() < 0.02
        if name == "piggyback":
            model.skip_scales["0"][2] = 3.0
        else:  # as after training: the gate reads the task and the features
            model.skip_attention["0"].excite.weight.normal_()
            before = model(x, tasks)
            model.skip_attention["0"].embed.weight[:, 2] += 5.0
        after = model(x, tasks)
    assert (after[2] - before[2]).abs().mean() > 1e-3
    assert torch.equal(after[[0, 1, 3, 4, 5]], before[[0, 1, 3, 4, 5]])


@pytest.mark.parametrize("name", ["single", "sharedenc", "johnson"])
def test_a_network_per_task_refuses_a_skip_gate_saying_why(name):
    from filmmtl.profiles import make_config
    with pytest.raises(ValueError, match="a network per task owns its skip already"):
        make_config("smoke", model=name, feature_skips=[0], skip_gate=True)


def test_the_design_table_has_the_same_columns_for_the_design_networks(tmp_path):
    """One story: the design's Table 2 names the same paper columns, filled from the NAME_design networks
    and notebook 02's Proposed, and is written beside the paper's-recipe table, not over it."""
    from filmmtl.tables import DESIGN_COLUMNS
    assert list(DESIGN_COLUMNS.values()) == list(COLUMNS.values())
    assert all(r in RECIPES for r in DESIGN_COLUMNS) and "proposed" in DESIGN_COLUMNS
    scores = {r: {"reconstruction": {"psnr": 30.0 + i}} for i, r in enumerate(DESIGN_COLUMNS)}
    rows = table2(scores, {r: 1 for r in DESIGN_COLUMNS}, {}, DESIGN_COLUMNS)
    psnr = next(r for r in rows if r["row"] == "task0_reconstruction" and r["metric"] == "PSNR")
    assert [psnr[c] for c in COLUMNS.values()] == [30.0 + i for i in range(len(COLUMNS))]
    write_table2(table2({}, {}, {}), tmp_path, {})
    write_table2(rows, tmp_path, {}, DESIGN_COLUMNS, name="table2_design")
    assert {p.name for p in tmp_path.iterdir()} == {"table2.csv", "table2.md", "table2_design.csv", "table2_design.md"}


def test_piggyback_refuses_a_base_of_another_backbone(tmp_path):
    from filmmtl.profiles import make_config, recipe_overrides
    from filmmtl.train import Trainer
    smoke = make_config("smoke")
    base = Trainer(make_config("smoke", **recipe_overrides("base_completion", smoke)), quiet=True)
    path = base.fit().save(tmp_path / "base.pt")
    design = {**recipe_overrides("piggyback1_design", smoke), "base_checkpoint": str(path)}
    with pytest.raises(ValueError, match=r"another backbone.*feature_skips"):
        Trainer(make_config("smoke", **design), quiet=True)


def test_proposed_ranks_tie_overlapping_intervals_and_rank_mixes_among_the_networks_that_mix():
    from filmmtl.tables import proposed_ranks
    row = lambda name, metric, direction, **cells: {"row": name, "metric": metric, "direction": direction, **{
        c: v[0] for c, v in cells.items()}, **{c + " (95%)": list(v[1:]) for c, v in cells.items() if len(v) == 3}}
    rows = [row("task0_reconstruction", "parameters", "lower", Proposed=(10,), Single=(60,)),
            row("task0_reconstruction", "PSNR", "higher", Proposed=(30, 29, 31), Single=(30.5, 30, 31)),  # tie
            row("task1_completion", "PSNR", "higher", Proposed=(20, 19, 21), Single=(23, 22, 24)),  # Single better
            row("task4_style_gogh", "FID", "lower", Proposed=(150.0,), Single=(140.0,)),  # no interval
            row("mix_restoration+style_gogh", "SSIM", "higher", Proposed=(0.5, 0.4, 0.6), EncIN=(0.3, 0.2, 0.35),
                Single=(None,))]  # Single cannot mix: no cell to rank
    ranks, unranked = proposed_ranks(rows)
    assert ranks == [("task0_reconstruction", "PSNR", 1, 2), ("task1_completion", "PSNR", 2, 2),
                     ("mix_restoration+style_gogh", "SSIM", 1, 2)]
    assert unranked == ["task4_style_gogh FID"]
    lower = [row("task4_style_gogh", "FID", "lower", Proposed=(150, 140, 160), Single=(100, 90, 110))]
    assert proposed_ranks(lower)[0] == [("task4_style_gogh", "FID", 2, 2)]
