"""bench/park_runs.py carries unfinished runs across sessions through git: what it parks must come back
byte for byte, and a damaged part must be refused rather than resumed from."""
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "park_runs.py"


def park_runs(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_a_parked_run_comes_back_byte_for_byte_and_a_damaged_one_is_refused(tmp_path):
    out, parked, back = tmp_path / "out", tmp_path / "parked", tmp_path / "back"
    (out / "train").mkdir(parents=True)
    (out / "checkpoints").mkdir()
    unfinished = bytes(range(256)) * 40_000  # 10.2 MB: three parts
    (out / "train" / "a.pt").write_bytes(unfinished)
    (out / "train" / "done.pt").write_bytes(b"a finished run's training state")
    (out / "checkpoints" / "done.pt").write_bytes(b"its export")
    (out / "train" / "a.log").write_text("step 500\n")
    assert park_runs("park", out, parked).returncode == 0
    parts = sorted((parked / "train").glob("a.pt.part*"))
    assert len(parts) == 3 and all(p.stat().st_size <= 4_000_000 for p in parts)
    assert not list((parked / "train").glob("done.pt*"))  # its export carries a finished run
    assert park_runs("unpark", parked, back).returncode == 0
    assert (back / "train" / "a.pt").read_bytes() == unfinished
    assert (back / "checkpoints" / "done.pt").read_bytes() == b"its export"
    assert (back / "train" / "a.log").read_text() == "step 500\n"

    parts[1].write_bytes(parts[1].read_bytes()[:-1])
    (back / "train" / "a.pt").unlink()
    refused = park_runs("unpark", parked, back)
    assert refused.returncode != 0 and "do not match their SHA-256" in refused.stderr
    assert not (back / "train" / "a.pt").exists()
