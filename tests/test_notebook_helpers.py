"""What the notebooks show beside their figures: claim boxes, validation curves, the network diagram."""
import pytest
import torch

from filmmtl.claims import Claim


def test_claim_box_says_which_way_the_numbers_went():
    held, failed = Claim("A beats B", 3 > 2, "3 vs 2"), Claim("A beats B", 1 > 2, "1 vs 2")
    assert "holds here" in held._repr_markdown_() and "NOT" not in held._repr_markdown_()
    assert failed._repr_markdown_().startswith("> ⚠️ **NOT reproduced here.**")
    assert "1 vs 2" in repr(failed) and "NOT reproduced" in repr(failed)


def test_validation_curves_plot_every_bar_or_say_there_is_none():
    from filmmtl.plots import network_diagram, validation_curves
    from filmmtl.models import build
    scores = {"reconstruction": {"psnr": 25.0}, "segmentation": {"iou": 0.5}}
    history = [{"step": 1, "job": "reconstruction", "loss": 0.1}] + \
        [{"step": s, "job": "validation", "scores": scores} for s in (100, 200)]
    fig = validation_curves(history)
    assert len(fig.axes) == 2 and list(fig.axes[0].lines[0].get_xdata()) == [100, 200]
    assert validation_curves(history[:1]) is None
    encin = build("encin", width=0.25)  # its encoder's three layers have plain IN: 12 FiLM sites drawn
    assert sum(len(line.get_xdata()) == 1 for line in network_diagram(encin).axes[0].lines) == 12
    gated = build("proposed", width=0.25, feature_skips=(0,), skip_gate=True)  # 15 layers + the skip's site
    assert "16 FiLM sites" in network_diagram(gated).axes[0].get_title()


def test_overlaid_curves_and_the_bars_still_improving_after_a_step():
    from filmmtl.evaluate import gains_after, late_share
    from filmmtl.plots import validation_curves
    validation = lambda step, psnr, iou: {"step": step, "job": "validation",
                                          "scores": {"reconstruction": {"psnr": psnr}, "segmentation": {"iou": iou}}}
    long_run = [validation(1000, 25.0, 0.6), validation(2000, 28.0, 0.6), validation(4000, 31.0, 0.6)]
    short_run = [validation(1000, 26.0, 0.5)]
    fig = validation_curves({"long": long_run, "short": short_run}, stop=1000)
    assert [len(ax.get_lines()) for ax in fig.axes] == [4, 4]  # two runs, the threshold and the stop line
    assert {t.get_text() for t in fig.legends[0].get_texts()} == {"long", "short"}
    assert gains_after(long_run, 2000) == [("reconstruction", 28.0, 31.0)]  # IoU stayed put
    assert gains_after(long_run, 4000) is None and gains_after(long_run, 500) is None
    assert late_share(long_run, 2000) == [("reconstruction", 0.5), ("segmentation", 0.0)]  # 3 of 6 dB late
    fell_back = long_run[:2] + [validation(4000, 27.0, 0.8)]
    assert late_share(fell_back, 2000) == [("reconstruction", -0.5), ("segmentation", 1.0)]


def test_dial_fractions_measure_the_share_of_the_way():
    """An output that moves as s^2 along a fixed direction has gone s^2 of the way at strength s; a linear
    one s; the plot draws both against the diagonal."""
    from filmmtl import plots
    start, direction = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    strengths = (0.0, 0.25, 0.5, 0.75, 1.0)
    quadratic = torch.stack([start + s ** 2 * direction for s in strengths])
    assert plots.dial_fractions(quadratic) == pytest.approx([s ** 2 for s in strengths], abs=1e-5)
    linear = torch.stack([start + s * direction for s in strengths])
    assert plots.dial_fractions(linear) == pytest.approx(list(strengths), abs=1e-5)
    assert plots.dial_fractions(torch.stack([start] * 5)) == [0.0] * 5  # a task that does nothing
    fig = plots.dial_curves({"quadratic": quadratic, "linear": linear}, strengths)
    assert len(fig.axes[0].lines) == 3


def test_a_figure_too_wide_for_a_notebook_is_refused_naming_its_smallest_text(tmp_path):
    """Session.save_figure checks every figure the notebooks save: text under 8 pt as displayed at 900 px
    (a figure wider than that is shrunk to it) is named, so the notebook run stops there."""
    import matplotlib.pyplot as plt
    from filmmtl import plots
    from filmmtl.session import Session
    narrow, ax = plt.subplots(figsize=(6, 3))
    ax.set_title("a readable title", fontsize=9)
    plots.check_readable(narrow)
    assert min(plots.displayed_text_sizes(narrow))[0] == pytest.approx(9 * 100 / 96)
    wide, axes = plt.subplots(1, 6, figsize=(18, 3))  # the same 9 pt, shrunk to fit the page
    axes[0].set_title("a readable title", fontsize=9)
    with pytest.raises(ValueError, match=r"wide: the text 'a readable title' would display at [5-7]\.\d pt \(< 8 pt\)"):
        plots.check_readable(wide, "wide")
    session = Session(profile="smoke", output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="too_wide"):
        session.save_figure(wide, "too_wide")
    assert not (session.output_dir / "too_wide.png").exists()
    session.save_figure(narrow, "narrow")
    assert (session.output_dir / "narrow.png").exists()


def test_validation_curves_overlay_runs_whose_bars_differ():
    """A run made before a bar existed (the edge scores) lacks it: its panel shows the other run only."""
    from filmmtl.plots import validation_curves
    old = [{"step": 1000, "job": "validation", "scores": {"reconstruction": {"psnr": 25.0}}}]
    new = [{"step": 1000, "job": "validation", "scores": {"reconstruction": {"psnr": 26.0},
                                                          "segmentation": {"iou": 0.7}}}]
    fig = validation_curves({"old": old, "new": new})
    drawn = [[len(line.get_xdata()) for line in ax.get_lines()] for ax in fig.axes]
    assert drawn == [[1, 1, 2], [0, 1, 2]]  # old, new, threshold: old has no segmentation point


def test_size_vs_quality_keeps_each_network_one_colour_and_each_set_one_marker():
    """Notebook 04's size figure: a network (column) is one colour in every panel and set, the proposed one
    red; the first set's markers filled, the second's hollow and drawn beside them; each point at its
    parameter count with its interval as whiskers."""
    from matplotlib.colors import to_hex
    from filmmtl import plots
    scores = lambda v: {job: {metric: (v, v - 1, v + 2)} for job, metric, _ in plots.SIZE_PANELS}
    sets = {"design": {"Proposed": (1000, scores(30)), "Single": (6000, scores(31))},
            "paper": {"Proposed": (1000, scores(20)), "Single": (6000, scores(21))}}
    fig = plots.size_vs_quality(sets)
    assert len(fig.axes) == 4
    for ax in fig.axes:
        points = [line for line in ax.lines if len(line.get_xdata()) == 1 and line.get_marker() == "o"]
        drawn = {(float(p.get_xdata()[0]), float(p.get_ydata()[0])): p for p in points}
        assert set(drawn) == {(1000, 30), (6000, 31), (1040, 20), (6240, 21)}
        assert to_hex(drawn[1000, 30].get_color()) == to_hex(drawn[1040, 20].get_color()) == to_hex("C3")
        assert to_hex(drawn[6000, 31].get_color()) != to_hex("C3")
        assert to_hex(drawn[6000, 31].get_markerfacecolor()) != "#ffffff"
        assert to_hex(drawn[6240, 21].get_markerfacecolor()) == "#ffffff"
        whiskers = [c for c in ax.collections if len(c.get_segments()) == 1]
        assert any(list(map(float, s[:, 1])) == [29, 32] for c in whiskers for s in c.get_segments())
