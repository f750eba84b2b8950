"""Intervals and verdicts, the edge score of the styles, the photographs and the validation split in use."""
import numpy as np
import pytest
import torch
from scipy.stats import pearsonr
from skimage.color import rgb2gray
from skimage.filters import sobel

from filmmtl import data, evaluate as scoring, intervals, metrics
from filmmtl.evaluate import evaluate, photograph_scores
from filmmtl.models import build
from filmmtl.tasks import TaskSpace
from filmmtl.train import Trainer


def test_edge_correlation_is_pearson_of_sobel_magnitudes():
    images = data.embedded_scenes("val", 32, n=3, cache=False).batch(torch.arange(3))[0]
    shifted = images.roll(3, dims=3)
    ours = metrics.edge_correlation(shifted, images)
    for i in range(3):
        a, b = (sobel(rgb2gray(x[i].permute(1, 2, 0).double().numpy())).ravel() for x in (shifted, images))
        assert abs(float(ours[i]) - pearsonr(a, b)[0]) < 1e-6
    assert torch.allclose(metrics.edge_correlation(images, images), torch.ones(3), atol=1e-6)
    assert float(ours.mean()) < 0.9  # moving the outlines is seen
    flat = torch.full_like(images, 0.5)
    assert metrics.edge_correlation(flat, images).tolist() == [0.0, 0.0, 0.0]  # a wash keeps nothing
    assert torch.isnan(metrics.edge_correlation(images, flat)).all()


def test_verdicts_and_ties():
    assert intervals.verdict(3.1, 3.4, 3.0) == "holds"
    assert intervals.verdict(2.7, 3.4, 3.0) == "within noise"
    assert intervals.verdict(2.1, 2.9, 3.0) == "misses"
    assert intervals.verdict(0.1, 0.3, 0.4, at_least=False) == "holds"
    assert intervals.verdict(0.3, 0.5, 0.4, at_least=False) == "within noise"
    assert intervals.verdict(0.45, 0.5, 0.4, at_least=False) == "misses"
    ranks = intervals.ranks_with_ties({"a": (10, 9, 11), "b": (9.5, 8.8, 10.2), "c": (5, 4, 6)})
    assert ranks == {"a": 1, "b": 1, "c": 3}
    low_better = intervals.ranks_with_ties({"a": (10, 9, 11), "c": (5, 4, 6)}, lower_is_better=True)
    assert low_better == {"a": 2, "c": 1}


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_images():
    g = torch.Generator().manual_seed(0)
    small = {"psnr": 20 + torch.randn(20, generator=g)}
    large = {"psnr": 20 + torch.randn(400, generator=g)}
    mean = lambda s: s["psnr"]
    lo_s, hi_s = intervals.bootstrap(small, mean)
    lo_l, hi_l = intervals.bootstrap(large, mean)
    assert lo_s < float(small["psnr"].mean()) < hi_s and lo_l < float(large["psnr"].mean()) < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 2
    assert intervals.bootstrap(small, mean) == (lo_s, hi_s)  # seeded
    counts = {"iou": (torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 2.0, 4.0]))}  # IoU: sum / sum
    lo, hi = intervals.bootstrap(counts, lambda s: s["iou"])
    assert 0.5 <= lo <= 6 / 8 <= hi <= 1.0


def test_bar_intervals_redraw_degradations_and_give_verdicts():
    torch.manual_seed(0)
    model, space = build("proposed", width=0.25).eval(), TaskSpace()
    val = data.load_dataset("scenes", "val", 32, 6)
    values, per_seed = scoring.seeded_values(model, space, val, ["reconstruction", "completion"], seeds=3)
    assert len(per_seed["completion"]) == 3 and len(per_seed["reconstruction"]) == 1  # nothing to redraw
    assert len({round(s["input_hole_psnr"], 6) for s in per_seed["completion"]}) == 3
    rows = {r["job"]: r for r in scoring.bar_intervals(values, per_seed, n_boot=200)}
    for row in rows.values():
        assert row["low"] <= row["value"] <= row["high"]
        assert row["verdict"] == intervals.verdict(row["low"], row["high"], row["threshold"], row["at_least"])
    assert rows["reconstruction"]["verdict"] == "misses"  # an untrained network is far under 30 dB


def test_style_scores_report_how_much_of_the_scene_is_kept():
    torch.manual_seed(0)
    model, space = build("proposed", width=0.25).eval(), TaskSpace()
    scores = evaluate(model, space, data.load_dataset("scenes", "val", 32, 4), ["style_gogh"])
    assert scores["style_gogh"]["input_edges"] == pytest.approx(1.0)
    assert -1 <= scores["style_gogh"]["edges"] <= 1


def test_photographs_are_not_training_backgrounds_and_are_scored():
    assert not set(data.PHOTOGRAPHS) & set(data.BACKGROUNDS)
    for name in data.PHOTOGRAPHS:
        image = data.load_photograph(name, 32)
        assert image.shape == (3, 32, 32) and 0 <= float(image.min()) and float(image.max()) <= 1
        assert float(image.std()) > 0.02  # a picture, not a blank
    torch.manual_seed(0)
    rows = photograph_scores(build("proposed", width=0.25).eval(), TaskSpace(), size=32)
    assert set(rows) == {"reconstruction PSNR (dB)", "restoration gain (dB)"}
    assert all(set(r) == set(data.PHOTOGRAPHS) and all(np.isfinite(list(r.values()))) for r in rows.values())
    with pytest.raises(ValueError, match="unknown photograph 'lena'"):
        data.load_photograph("lena")


def test_training_validates_on_the_validation_split_never_on_test():
    trainer = Trainer(profile="smoke", quiet=True, steps=2, eval_every=1, n_val=3)
    assert "(val," in trainer.val_set.source and not hasattr(trainer, "test_set")
    trainer.fit()
    validation = [h for h in trainer.history if h["job"] == "validation"]
    expected = evaluate(trainer.model, trainer.space, data.load_dataset("scenes", "val", 32, 3), ["reconstruction"])
    assert validation[-1]["scores"]["reconstruction"]["psnr"] == pytest.approx(expected["reconstruction"]["psnr"])


def test_table2_cells_carry_intervals_from_the_cached_evaluation(tmp_path):
    from filmmtl.evaluate import evaluate_cached
    from filmmtl.tables import table2, write_table2
    torch.manual_seed(0)
    model, space = build("proposed", width=0.25).eval(), TaskSpace()
    test = data.load_dataset("scenes", "test", 32, 5)
    jobs = ["reconstruction", "restoration"]
    scores, cached = evaluate_cached(tmp_path, model, space, test, jobs, seeds=2)
    assert not cached and evaluate_cached(tmp_path, model, space, test, jobs, seeds=2) == (scores, True)
    assert not evaluate_cached(tmp_path, model, space, test, jobs)[1]  # without intervals: another entry
    value, low, high = scores["intervals"]["restoration"]["psnr"]
    assert low <= value <= high and "input_psnr" not in scores["intervals"]["restoration"]
    rows = table2({"proposed_compared": scores}, {"proposed_compared": 1}, {"profile": "smoke"})
    row = next(r for r in rows if r["row"].endswith("restoration") and r["metric"] == "PSNR")
    assert row["Proposed"] == value and row["Proposed (95%)"] == [low, high]
    assert f"[{low:.4g}, {high:.4g}]" in write_table2(rows, tmp_path, {"profile": "smoke"})


def test_one_scoring_pass_gives_the_separate_passes_numbers():
    """evaluate(seeds=k) shares its first seed with the intervals and the input's scores with every network
    scored before it: the numbers are those of separate passes, bit for bit."""
    from filmmtl.evaluate import _INPUT_SCORES
    test = data.embedded_scenes("test", 32, n=6, cache=False)
    jobs = ["reconstruction", "completion", "restoration"]
    space = TaskSpace()
    first, second = (build("proposed", width=0.25, generator_init_std=s).eval() for s in (0.01, 0.3))
    _INPUT_SCORES.clear()
    evaluate(first, space, test, jobs, seeds=2)  # fills the shared input scores
    shared = evaluate(second, space, test, jobs, seeds=2)
    _INPUT_SCORES.clear()
    alone = evaluate(second, space, test, jobs)
    values = scoring.seeded_values(second, space, test, jobs, seeds=2)[0]
    assert {j: shared[j] for j in jobs} == alone
    assert shared["intervals"] == intervals.metric_intervals(values)
    assert shared["completion"]["psnr"] != evaluate(first, space, test, jobs)["completion"]["psnr"]
