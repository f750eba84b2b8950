"""Notebook 04's evaluation cache: keyed by the network's weights, the test set, the jobs and FID count; and
the common teacher of notebook 03."""
import pytest
import torch

from filmmtl.data import load_dataset
from filmmtl.evaluate import evaluate, evaluate_cached
from filmmtl.models import build
from filmmtl.tasks import TaskSpace


def test_cache_returns_the_same_scores_and_notices_every_change(tmp_path):
    model = build("proposed", width=0.25).eval()
    space, test = TaskSpace(), load_dataset("scenes", "test", 32, 6)
    jobs = ["reconstruction", "restoration", "segmentation"]
    first, cached = evaluate_cached(tmp_path, model, space, test, jobs)
    assert not cached
    again, cached = evaluate_cached(tmp_path, model, space, test, jobs)
    assert cached and again == first
    fresh = evaluate(model, space, test, jobs)
    assert again["restoration"]["psnr"] == fresh["restoration"]["psnr"]
    with torch.no_grad():
        model.backbone.last.conv.bias[0] += 0.01  # another network: scored again
    assert not evaluate_cached(tmp_path, model, space, test, jobs)[1]
    assert not evaluate_cached(tmp_path, model, space, test, jobs[:2])[1]
    assert not evaluate_cached(tmp_path, model, space, load_dataset("scenes", "test", 32, 5), jobs)[1]
    assert len(list(tmp_path.glob("*.json"))) == 4


def test_damaged_cache_file_is_scored_again(tmp_path):
    model, space, test = build("proposed", width=0.25).eval(), TaskSpace(), load_dataset("scenes", "test", 32, 4)
    scores, _ = evaluate_cached(tmp_path, model, space, test, ["reconstruction"])
    path = next(tmp_path.glob("*.json"))
    path.write_text("{truncated")
    again, cached = evaluate_cached(tmp_path, model, space, test, ["reconstruction"])
    assert not cached and again == scores and path.read_text() != "{truncated"


def test_common_stylist_gives_every_network_the_same_teachers(tmp_path):
    """Fig. 6 compares methods against one teacher: a stylist's teacher, not each network's own."""
    from filmmtl.evaluate import job_inputs, run
    from filmmtl.tasks import MIXES, mix_teacher
    torch.manual_seed(0)
    network, stylist = build("proposed", width=0.25).eval(), build("proposed", width=0.25).eval()
    space, test = TaskSpace(), load_dataset("scenes", "test", 32, 4)
    mixes = ["restoration+style_gogh", "restoration+segmentation"]
    own = evaluate(network, space, test, mixes)
    common = evaluate(network, space, test, mixes, stylist=(stylist, space))
    assert common["restoration+segmentation"]["teacher_l2"] == own["restoration+segmentation"]["teacher_l2"]
    assert common["restoration+style_gogh"]["teacher_l2"] != own["restoration+style_gogh"]["teacher_l2"]
    images, masks = test.batch(torch.arange(4))
    inputs, _ = job_inputs("restoration+style_gogh", images)
    teacher = mix_teacher(MIXES["restoration+style_gogh"], images, masks,
                          lambda key, x: run(stylist, space.vector(key), x))
    output = run(network, space.vector("restoration+style_gogh"), inputs)
    expected = float((output - teacher).square().mean())
    assert abs(common["restoration+style_gogh"]["teacher_l2"] - expected) < 1e-6
    evaluate_cached(tmp_path, network, space, test, mixes)
    assert not evaluate_cached(tmp_path, network, space, test, mixes, stylist=(stylist, space))[1]


def test_only_scores_just_the_named_metrics_with_the_same_values(tmp_path, monkeypatch):
    """Notebook 03 shows only each mix's distance to its teacher: ``only`` computes that alone, to the
    same value and interval as a full scoring, makes each teacher once for all seeds, and has its own
    cache entry."""
    import filmmtl.evaluate as scoring
    torch.manual_seed(0)
    network, space, test = build("proposed", width=0.25).eval(), TaskSpace(), load_dataset("scenes", "test", 32, 6)
    mixes = ["restoration+style_gogh", "restoration+segmentation"]
    full = evaluate(network, space, test, mixes, seeds=3)
    teachers = []
    real_teacher = scoring.job_teacher
    monkeypatch.setattr(scoring, "job_teacher", lambda *a, **k: teachers.append(a[2]) or real_teacher(*a, **k))
    only = evaluate(network, space, test, mixes, seeds=3, only=["teacher_l2"])
    assert teachers == mixes  # once per mix, not once per seed
    for mix in mixes:
        assert only[mix] == {"teacher_l2": full[mix]["teacher_l2"]}
        assert only["intervals"][mix] == {"teacher_l2": full["intervals"][mix]["teacher_l2"]}
    evaluate_cached(tmp_path, network, space, test, mixes, seeds=3)
    assert not evaluate_cached(tmp_path, network, space, test, mixes, seeds=3, only=["teacher_l2"])[1]
    for wrong, error in (("teacher_l2", TypeError), (["teacher_L2"], ValueError)):
        with pytest.raises(error, match="only="):
            evaluate(network, space, test, mixes, only=wrong)
