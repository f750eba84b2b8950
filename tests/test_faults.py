"""Fault injection: a run killed at random moments, a disk that fills, two writers at once. Nothing is lost
and every message names the problem."""
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from filmmtl.__main__ import main
from filmmtl.checkpoints import read_manifest, sha256
from filmmtl.files import DiskFull, Locked, atomic_write, clean_temporaries, locked
from filmmtl.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "--profile", "smoke", "--quiet", "--set", "checkpoint_every=1"]


def filmmtl(*args, env=None):
    """``python -m filmmtl ARGS`` as its own process (one thread), so that it can be killed or raced."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "filmmtl", *args], cwd=ROOT, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# ---------------------------------------------------------------- killed runs

def wait_for_a_new_checkpoint(path, since, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_mtime_ns != since:
            return
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint written at {path} within {seconds} s")


def test_a_run_killed_at_random_moments_resumes_to_the_same_weights(tmp_path):
    steps = ["--steps", "60"]
    whole = filmmtl(*TRAIN, *steps, "--out", str(tmp_path / "whole.pt"))
    killed = tmp_path / "killed.pt"
    chance = random.Random(0)
    run = filmmtl(*TRAIN, *steps, "--out", str(killed))
    for attempt in range(3):  # kill it three times while it trains, each at a random moment
        wait_for_a_new_checkpoint(killed, killed.stat().st_mtime_ns if killed.exists() else None)
        time.sleep(chance.uniform(0.0, 0.3))
        assert run.poll() is None, "the run finished before it could be killed: give it more steps"
        run.send_signal(signal.SIGKILL)
        run.wait()
        run = filmmtl(*TRAIN, *steps, "--out", str(killed), "--resume")
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    assert whole.wait(timeout=300) == 0
    a, b = weights(tmp_path / "whole.pt"), weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list(tmp_path.glob(".*.tmp")), "a killed write's temporary file was not cleaned"


def test_temporary_files_of_dead_writers_are_cleaned_and_live_ones_kept(tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f".run.pt.{dead_pid()}.tmp"
        live = tmp_path / f".other.pt.{writer.pid}.tmp"
        for path in (stale, live):
            path.write_bytes(b"x" * 100)
        atomic_write(tmp_path / "run.pt", b"new")
        assert not stale.exists() and live.exists() and (tmp_path / "run.pt").read_bytes() == b"new"
    finally:
        writer.kill()
        writer.wait()
    assert clean_temporaries(tmp_path) == [live]


# ---------------------------------------------------------------- two writers

def test_a_second_run_into_the_same_out_is_refused_naming_the_first(tmp_path):
    out = tmp_path / "run.pt"
    first = filmmtl(*TRAIN, "--steps", "400", "--out", str(out))
    deadline = time.monotonic() + 120
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        with pytest.raises(SystemExit, match=f"being written by process {first.pid}"):
            main([*TRAIN, "--steps", "400", "--out", str(out), "--resume"])
    finally:
        first.kill()
        first.wait()


def test_a_stale_lock_is_named_and_taken_over(tmp_path):
    out = tmp_path / "run.pt"
    (tmp_path / ".run.pt.lock").write_text(f"{dead_pid()} {os.uname().nodename}\n")
    with pytest.warns(UserWarning, match="no longer running; taking it over"):
        main([*TRAIN, "--steps", "2", "--out", str(out)])
    assert out.exists() and not (tmp_path / ".run.pt.lock").exists()


def test_a_live_lock_is_refused_without_waiting(tmp_path):
    with locked(tmp_path / "x.pt"):
        with pytest.raises(Locked, match=f"process {os.getpid()}"):
            with locked(tmp_path / "x.pt"):
                pass
    with locked(tmp_path / "x.pt"):  # released
        pass


def test_two_exports_into_one_folder_at_once_keep_both_manifest_lines(tmp_path):
    source = tmp_path / "run.pt"
    main([*TRAIN, "--steps", "2", "--out", str(source)])
    shipped = tmp_path / "shipped"
    racers = [filmmtl("export", "--checkpoint", str(source), "--out", str(shipped / f"{name}.pt"))
              for name in ("a", "b", "c")]
    for racer in racers:
        _, err = racer.communicate(timeout=300)
        assert racer.returncode == 0, err
    listed = read_manifest(shipped)
    assert sorted(listed) == ["a.pt", "b.pt", "c.pt"]
    assert all(listed[name] == sha256(shipped / name) for name in listed)


# ---------------------------------------------------------------- a full disk

@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (needs root and mount; skipped with the reason where it cannot be mounted)."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if made.returncode:
        pytest.skip(f"cannot mount a small tmpfs here ({made.stderr.strip() or made.returncode})")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_named_and_keeps_the_old_file(small_disk):
    target = small_disk / "report.json"
    atomic_write(target, "old")
    with pytest.raises(DiskFull, match=r"disk full: writing .*report.json needs 3\.0 MB .* MB free"):
        atomic_write(target, b"x" * 3_000_000)
    assert target.read_text() == "old"
    assert [p.name for p in small_disk.iterdir()] == ["report.json"], "the partial temporary file stayed"


def test_training_onto_a_full_disk_names_it_and_keeps_the_last_checkpoint(small_disk):
    out = small_disk / "run.pt"
    trainer = Trainer(profile="smoke", quiet=True, steps=3, eval_every=0, checkpoint_every=1)
    trainer.fit(steps=1, checkpoint=out)
    good = out.read_bytes()
    disk = os.statvfs(small_disk)
    (small_disk / "filler").write_bytes(b"\0" * (disk.f_bavail * disk.f_frsize - len(good) // 2))
    with pytest.raises(DiskFull, match="disk full: writing .*run.pt needs"):
        trainer.fit(checkpoint=out)
    assert out.read_bytes() == good


def test_a_report_that_cannot_be_written_is_still_printed(tmp_path, monkeypatch, capsys):
    source = tmp_path / "run.pt"
    main([*TRAIN, "--steps", "1", "--out", str(source)])
    capsys.readouterr()

    def full(path, data):
        raise DiskFull(errno.ENOSPC, f"disk full: writing {path} needs 0.1 MB and its disk has 0.0 MB free")
    monkeypatch.setattr("filmmtl.__main__.atomic_write", full)
    with pytest.raises(SystemExit, match="disk full: writing .*report.json"):
        main(["evaluate", "--checkpoint", str(source), "--seeds", "0", "--out", str(tmp_path / "report.json")])
    printed = json.loads(capsys.readouterr().out)
    assert "scores" in printed and not (tmp_path / "report.json").exists()
