"""What the notebooks show beside their figures: claim boxes, validation curves, the network diagram."""
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
