"""The training engine: methods, exact resume, safe checkpoints, clear errors, CLI."""
import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from filmmtl.__main__ import main
from filmmtl.profiles import make_config
from filmmtl.batches import noisy_identity
from filmmtl.train import NonFiniteLoss, Trainer, balance_gradient, learning_rate, load_model, provenance

warnings.filterwarnings("ignore", message="feature_net='auto'")
MIXES = ["restoration+style_gogh", "restoration+segmentation", "segmentation+style_gogh"]


def smoke(**overrides):
    return Trainer(profile="smoke", quiet=True, **overrides)


def weights(trainer):
    return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])


def test_profiles_are_plain_data_and_overridable():
    cfg = make_config("course", steps=7)
    assert cfg["steps"] == 7 and cfg["size"] == 64 and cfg["profile"] == "course"
    assert make_config("paper")["size"] == 128 and make_config("paper")["width"] == 1.0
    with pytest.raises(ValueError, match="unknown config fields"):
        make_config("smoke", stepz=3)
    with pytest.raises(ValueError, match="unknown profile"):
        make_config("huge")
    with pytest.raises(ValueError, match="'method' must be one of 1, 2, 3; got 4"):
        make_config("smoke", method=4)
    with pytest.raises(ValueError, match="'lr_schedule' must be one of 'constant', 'cosine'"):
        make_config("smoke", lr_schedule="step")


def test_cosine_schedule_anneals_to_zero_and_drives_the_optimiser():
    cfg = make_config("smoke", steps=100, lr=1e-3)
    assert [round(learning_rate(cfg, s), 9) for s in (0, 50, 100, 150)] == [1e-3, 5e-4, 0.0, 0.0]
    assert learning_rate(dict(cfg, lr_schedule="constant"), 99) == 1e-3
    trainer = smoke(steps=4, eval_every=0).fit(steps=3)
    assert trainer.optimiser.param_groups[0]["lr"] == pytest.approx(learning_rate(trainer.config, 2))
    with pytest.raises(ValueError, match="past the config's steps=4"):
        trainer.fit(steps=5)


@pytest.mark.parametrize("method", [1, 2, 3])
def test_each_method_trains_and_method_1_never_sees_mixes(method):
    trainer = smoke(mixes=MIXES, method=method, mixed_batch=True, balance="none", steps=3, eval_every=0)
    before = weights(trainer).clone()
    trainer.fit()
    trained = {h["job"] for h in trainer.history if "loss" in h}
    assert not torch.equal(before, weights(trainer))
    assert (set(MIXES) & set(trainer.jobs)) == (set() if method == 1 else set(MIXES))
    assert trained <= set(trainer.jobs)


def test_balancing_scales_a_job_towards_the_mean_gradient_norm():
    """balance='grad_norm': a job whose gradient is smaller than the jobs' mean (EMA of norms) is scaled up."""
    trainer = smoke(steps=1)
    trainer.balance_ema = {"style_gogh": 4.0}
    for p in trainer.model.parameters():
        p.grad = torch.ones_like(p)
    norm = float(torch.cat([p.grad.flatten() for p in trainer.model.parameters()]).norm())
    for p in trainer.model.parameters():
        p.grad /= norm  # this job's gradient norm: 1
    balance_gradient(trainer.model.parameters(), trainer.balance_ema, "restoration", trainer.config["balance_cap"])
    scaled = float(torch.cat([p.grad.flatten() for p in trainer.model.parameters()]).norm())
    assert trainer.balance_ema["restoration"] == pytest.approx(1.0, rel=1e-4) and scaled == pytest.approx(2.5, rel=1e-4)
    with pytest.raises(ValueError, match="mixed_batch"):
        smoke(mixed_batch=True, balance="grad_norm")


def test_identity_noise_makes_reconstruction_samples_noisy_and_nothing_else():
    """identity_noise: drawn reconstruction samples get restoration's noise (their input and target); other
    jobs' samples are untouched; at 0 no random number is drawn, so older runs reproduce exactly."""
    images = torch.rand(6, 3, 32, 32)
    jobs = ["reconstruction", "restoration", "reconstruction", "style_gogh", "reconstruction", "completion"]
    rng = torch.Generator().manual_seed(0)
    noisy = noisy_identity(images, jobs, 1.0, rng)
    changed = [not torch.equal(a, b) for a, b in zip(noisy, images)]
    assert changed == [job == "reconstruction" for job in jobs]
    assert 0.05 < float((noisy[0] - images[0]).std()) < 0.15  # restoration's sigma = 0.1, clipped
    state = rng.get_state()
    assert noisy_identity(images, jobs, 0.0, rng) is images and torch.equal(rng.get_state(), state)
    with pytest.raises(ValueError, match="needs 'reconstruction' in tasks"):
        smoke(identity_noise=0.5, tasks=["restoration"])
    with pytest.raises(ValueError, match="'identity_noise' must be"):
        smoke(identity_noise=1.5)


def test_hole_weight_weighs_the_hole_and_leaves_other_losses_alone():
    """hole_weight: completion's L2 is a weighted mean with the hole's pixels at the weight and the rest at 1;
    at 1 (the default) it is plain MSE, and tasks without a region never change."""
    torch.manual_seed(0)
    images, output = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    hole = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    hole[:, :, 2:6, 2:6] = True
    masks = torch.zeros(2, 8, 8, dtype=torch.long)
    error = (output - images).square()
    inside, outside = error.expand(2, 3, 8, 8)[hole.expand(2, 3, 8, 8)], error[~hole.expand(2, 3, 8, 8)]
    weighted = smoke(hole_weight=4.0)
    expected = (4 * inside.sum() + outside.sum()) / (4 * inside.numel() + outside.numel())
    loss = weighted.objective.task_loss("completion", output, images, masks, hole)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    plain = float(torch.nn.functional.mse_loss(output, images))
    unweighted = smoke().objective.task_loss("completion", output, images, masks, hole)
    assert float(unweighted) == pytest.approx(plain, rel=1e-6)
    assert float(weighted.objective.task_loss("restoration", output, images, masks)) == pytest.approx(plain, rel=1e-6)
    with pytest.raises(ValueError, match="'hole_weight' must be"):
        smoke(hole_weight=0)


def test_auto_precision_is_fp32_on_a_cpu_and_recorded():
    """amp='auto': bf16 autocast on a GPU only (on CPUs it was 0.71x, 1.2x and 13x the fp32 step time, by
    machine, with no flag to tell them apart); the choice is recorded; True and False are obeyed as given."""
    trainer = smoke(amp="auto", device="cpu")
    assert trainer.amp is False and provenance(trainer)["bf16_autocast"] is False
    assert smoke(amp=True, device="cpu").amp is True and smoke(amp=False, device="cpu").amp is False
    assert make_config("course")["amp"] == "auto"


def test_interrupted_run_resumes_exactly(tmp_path):
    straight = smoke(steps=4).fit()
    first = smoke(steps=4)
    first.fit(steps=2, checkpoint=tmp_path / "run.pt")
    resumed = smoke(steps=4).load(tmp_path / "run.pt")
    assert resumed.step_count == 2
    resumed.fit()
    assert torch.equal(weights(straight), weights(resumed))


def test_a_run_checkpointed_before_the_loop_was_split_resumes_on_the_same_path(tmp_path):
    """tests/data/pre_refactor_run.pt was written by the training code of commit db6e7d1 (one Trainer.step
    doing everything) at step 3 of 8; today's code resumes it and makes the same losses and weights that
    run made in its own process (relative 1e-5: another CPU may round differently)."""
    data = Path(__file__).parent / "data"
    record = json.loads((data / "pre_refactor_run.json").read_text())
    shutil.copy(data / "pre_refactor_run.pt", tmp_path / "run.pt")
    resumed = Trainer(quiet=True, **record["config"]).load(tmp_path / "run.pt").fit()
    losses = [[h["step"], h["job"], h["loss"]] for h in resumed.history if "loss" in h]
    assert [row[:2] for row in losses] == [row[:2] for row in record["losses"]]
    assert [row[2] for row in losses] == pytest.approx([row[2] for row in record["losses"]], rel=1e-5)
    state = resumed.model.state_dict()
    for name, (total, magnitude) in record["weights"].items():
        p = state[name].double()
        assert [float(p.sum()), float(p.abs().sum())] == pytest.approx([total, magnitude], rel=1e-5, abs=1e-6), name


def test_run_resumed_across_legs_reports_each_leg_and_the_total_wall_time(tmp_path):
    out = tmp_path / "legs.pt"
    first = smoke(steps=3, eval_every=0, checkpoint_every=1)
    first.fit(steps=2, checkpoint=out)  # the first session stops after step 2
    main(["train", "--profile", "smoke", "--out", str(out), "--steps", "3", "--quiet", "--resume",
          "--set", "eval_every=0", "--set", "checkpoint_every=1"])
    sidecar = json.loads(out.with_suffix(".json").read_text())
    legs = sidecar["legs"]
    assert [(leg["from_step"], leg["to_step"]) for leg in legs] == [(0, 2), (2, 3)]
    assert all(leg["seconds"] > 0 and leg["device"] == "cpu" and "threads" in leg["processor"] for leg in legs)
    wall = sidecar["wall_minutes"]
    assert wall["from_step"] == 2
    assert wall["total_minutes"] == round(sum(leg["seconds"] for leg in legs) / 60, 1)
    shipped = tmp_path / "shipped" / "legs.pt"
    main(["export", "--checkpoint", str(out), "--out", str(shipped)])
    exported = json.loads(shipped.with_suffix(".json").read_text())
    assert exported["wall_minutes"] == wall and exported["legs"] == legs


def test_cli_recipe_steps_follow_a_set_comparison_draws(tmp_path):
    """bench/train_compared.sh trains longer by --set comparison_draws: the recipe's steps must follow it
    (they were computed from the profile's draws before the --set applied, so it trained 200 draws)."""
    from filmmtl.profiles import comparison_steps, recipe_overrides
    out = tmp_path / "method1.pt"
    main(["train", "--recipe", "method1", "--profile", "smoke", "--out", str(out), "--quiet",
          "--set", "comparison_draws=0.2", "--set", "eval_every=0"])
    steps = json.loads(out.with_suffix(".json").read_text())["steps"]
    assert steps == comparison_steps({**make_config("smoke"), "comparison_draws": 0.2}) == 2
    assert steps != recipe_overrides("method1", make_config("smoke"))["steps"]


@pytest.mark.parametrize("argv", [["--help"], ["evaluate", "--help"], ["train", "--help"]])
def test_cli_help_prints(argv, capsys):
    """Every command's help prints (a docstring's "95%" once broke argparse's formatting of the list)."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 0 and "usage: python -m filmmtl" in capsys.readouterr().out


def test_wall_time_total_only_when_every_leg_since_step_0_is_known():
    from filmmtl.__main__ import wall_minutes
    legs = [{"from_step": 0, "to_step": 5, "seconds": 60.0}, {"from_step": 5, "to_step": 9, "seconds": 30.0}]
    assert wall_minutes(legs, 5, 30.0) == {"from_step": 5, "minutes": 0.5, "total_minutes": 1.5}
    assert "total_minutes" not in wall_minutes(legs[1:], 5, 30.0)  # resumed from a run without legs


def test_checkpoint_for_another_network_lists_the_mismatch(tmp_path):
    smoke(steps=1, eval_every=0).fit(checkpoint=tmp_path / "a.pt")
    with pytest.raises(ValueError, match=r"width: checkpoint 0.25 vs requested 0.5"):
        smoke(width=0.5).load(tmp_path / "a.pt")
    with pytest.raises(ValueError, match="tasks"):
        smoke(tasks=["reconstruction", "restoration"]).load(tmp_path / "a.pt")


def test_checkpoint_refuses_pickled_code(tmp_path):
    import argparse
    torch.save({"model": argparse.Namespace(code="anything pickled")}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not a readable filmmtl checkpoint"):
        smoke().load(tmp_path / "evil.pt")


def test_interrupted_save_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    trainer = smoke(steps=2, eval_every=0).fit(steps=1)
    path = trainer.save(tmp_path / "good.pt")
    good = path.read_bytes()

    def interrupted(descriptor):  # the new bytes are in the temporary file, not yet renamed
        raise KeyboardInterrupt
    monkeypatch.setattr("filmmtl.files.os.fsync", interrupted)
    trainer.fit()
    with pytest.raises(KeyboardInterrupt):
        trainer.save(path)
    assert path.read_bytes() == good and list(tmp_path.iterdir()) == [path]


def test_non_finite_loss_stops_and_keeps_checkpoint(tmp_path):
    trainer = smoke(steps=2, eval_every=0, checkpoint_every=1)
    trainer.fit(steps=1, checkpoint=tmp_path / "run.pt")
    good = (tmp_path / "run.pt").read_bytes()
    with torch.no_grad():
        trainer.model.generator.mlp[0].bias.fill_(float("nan"))
    with pytest.raises(NonFiniteLoss, match="last good checkpoint is kept"):
        trainer.fit(checkpoint=tmp_path / "run.pt")
    assert (tmp_path / "run.pt").read_bytes() == good


def test_validation_history_and_load_model(tmp_path):
    trainer = smoke(steps=2, eval_every=2).fit(checkpoint=tmp_path / "m.pt")
    validation = [h for h in trainer.history if h["job"] == "validation"]
    assert validation and set(validation[0]["scores"]) == set(trainer.jobs)
    model, cfg, provenance = load_model(tmp_path / "m.pt")
    assert cfg["profile"] == "smoke" and provenance["feature_net"] == "vgg19-imagenet"
    assert provenance["data_source"].startswith("embedded scenes")


def test_cli_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "cli.pt"
    main(["train", "--profile", "smoke", "--out", str(out), "--steps", "1", "--quiet", "--set", "eval_every=0"])
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["command"].startswith("python -m filmmtl") and sidecar["config"]["steps"] == 1
    with pytest.raises(SystemExit, match="nothing was overwritten"):
        main(["train", "--profile", "smoke", "--out", str(out), "--steps", "1"])
    capsys.readouterr()
    main(["evaluate", "--checkpoint", str(out), "--n", "4"])
    report = json.loads(capsys.readouterr().out)
    assert report["scores"]["restoration"]["input_psnr"] > 15 and report["split"] == "test"
    assert "(test," in report["provenance"]["data_source"]
    bars = report["quality_bars"]
    assert [b["job"] for b in bars[:8]] == ["reconstruction", "completion", "restoration", "segmentation",
                                           "style_gogh", "style_munch", "style_gogh", "style_munch"]
    assert [b["job"] for b in bars[8:]] == ["completion", "restoration", "restoration", "segmentation",
                                           "style_gogh", "style_munch"]  # sweeps of every task but the identity
    intervals = report["bar_intervals"]
    assert [b["job"] for b in intervals] == [b["job"] for b in bars[:8]]
    assert all(b["low"] <= b["value"] <= b["high"] and b["verdict"] in ("holds", "within noise", "misses")
               for b in intervals)
    assert len(intervals[1]["per_seed"]) == 3  # completion's holes drawn with three seeds
    sweeps = [b for b in bars[8:] if isinstance(b["value"], dict)]
    assert len(sweeps) == 5 and all(len(b["value"]["to_c0"]) == 5 for b in sweeps)
    slider = [b for b in bars[8:] if not isinstance(b["value"], dict)][0]
    assert slider["threshold"] == 0.5 and slider["holds"] == (slider["value"] >= 0.5)
    main(["evaluate", "--checkpoint", str(out), "--n", "4", "--split", "val", "--seeds", "0"])
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "val" and "(val," in report["provenance"]["data_source"] and "bar_intervals" not in report
    with pytest.raises(SystemExit):
        main(["evaluate", "--checkpoint", str(out), "--seeds", "-1"])
    with pytest.raises(SystemExit):
        main(["train", "--help"])


def test_quality_bars_read_gains_and_ratios_in_the_right_direction():
    from filmmtl.evaluate import quality_bars
    scores = {"reconstruction": {"psnr": 30.0}, "restoration": {"psnr": 24.0, "input_psnr": 20.0},
              "completion": {"hole_psnr": 16.0, "input_hole_psnr": 12.0},
              "segmentation": {"iou": 0.84}, "style_gogh": {"gram": 4.0, "input_gram": 10.0},
              "style_munch": {"gram": 5.0, "input_gram": 10.0}}
    bars = {b["job"]: (b["value"], b["holds"]) for b in quality_bars(scores)}
    assert bars == {"reconstruction": (30.0, True), "restoration": (4.0, False), "completion": (4.0, True),
                    "segmentation": (0.84, False), "style_gogh": (0.4, True), "style_munch": (0.5, False)}
    assert not quality_bars({"reconstruction": {"psnr": 29.9}})[0]["holds"]


class ShiftByStrength(torch.nn.Module):
    """A stand-in network whose output moves by f(total strength): monotonic f passes the sweep bar."""

    def __init__(self, f):
        super().__init__()
        self.f, self.anchor = f, torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, c):
        c = torch.as_tensor(c, dtype=torch.float32).reshape(-1, 6).expand(len(x), 6)
        return x * 0.5 + self.f(c.sum(1)).view(-1, 1, 1, 1)


def test_strength_bar_holds_only_for_monotonic_sweeps():
    from filmmtl.evaluate import strength_bars
    from filmmtl.tasks import TaskSpace
    images = torch.rand(4, 3, 16, 16)
    rising = strength_bars(ShiftByStrength(lambda s: 0.2 * s), TaskSpace(), images, ["segmentation"])
    wavy = strength_bars(ShiftByStrength(lambda s: 0.2 * torch.sin(6 * s)), TaskSpace(), images, ["segmentation"])
    assert rising[0]["holds"] and not wavy[0]["holds"]


def test_compared_networks_draw_each_task_equally_often():
    from filmmtl.profiles import RECIPES, job_draws, recipe_overrides
    course = make_config("course")
    draws = {recipe: job_draws({**course, **recipe_overrides(recipe, course)})
             for recipe in ("method1", "method2", "proposed_compared", "sgn", "single", "sharedenc", "piggyback1")}
    for task in course["tasks"]:
        assert len({round(d[task], 6) for d in draws.values()}) == 1, task
    assert draws["method2"]["completion"] == 3 * draws["method2"]["reconstruction"] == 3600
    assert "restoration+segmentation" in draws["method2"] and "restoration+segmentation" not in draws["method1"]
    assert recipe_overrides("method2", course)["steps"] == 16800
    assert recipe_overrides("single", course)["steps"] == 13200
    assert recipe_overrides("base_completion", course)["steps"] == 13200  # as many steps as a six-task network
    assert "steps" not in recipe_overrides("proposed", course) and RECIPES["proposed"]["task_weights"]


def test_recipes_resolve_and_piggyback_needs_a_base():
    from filmmtl.profiles import recipe_overrides
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe_overrides("resnet", make_config("smoke"))
    with pytest.raises(ValueError, match="base_checkpoint"):
        smoke(model="piggyback")
    with pytest.raises(ValueError, match="cannot learn mixes"):
        smoke(model="single", mixes=MIXES, method=3)


def test_every_shipped_network_is_its_recipe_in_the_course_profile():
    """retrain=True remakes each shipped network: its config is its recipe's, field by field, except the
    ``RUNTIME`` fields (where and in what precision it ran: ``amp="auto"`` follows the machine, as --resume
    allows)."""
    from pathlib import Path
    from filmmtl.checkpoints import upgrade_config
    from filmmtl.profiles import recipe_overrides
    from filmmtl.session import SHIPPED
    from filmmtl.train import check_same_run
    course = make_config("course")
    sidecars = sorted(SHIPPED.glob("*.json"))
    assert {p.stem for p in sidecars} >= {"proposed", "proposed_compared", "method1", "single", "piggyback1"}
    for sidecar in sidecars:
        shipped = upgrade_config(json.loads(sidecar.read_text())["config"])  # as loading reads it
        name, _, seed = sidecar.stem.partition("_seed")  # proposed_seed1: the recipe trained with seed 1
        recipe = {**course, **recipe_overrides(name, course), "seed": int(seed or 0)}
        if shipped.get("base_checkpoint"):  # trained against a path to the base it names
            shipped["base_checkpoint"] = Path(shipped["base_checkpoint"]).stem
        check_same_run(shipped, recipe, path=sidecar.name)  # raises, naming every field that differs
