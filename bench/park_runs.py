"""Carry a folder of training runs (bench/train_compared.sh's OUT) across sessions through git, so that a
workspace lost between sessions costs nothing. An unfinished run's resume checkpoint (model, optimiser and
random state: 5-40 MB) is over the 5 MB limit on tracked files, so `park` cuts it into numbered parts
under 4 MB with its SHA-256 beside them; finished exports (about 1 MB, with their manifest) and the logs
are copied whole. `unpark` puts everything back where the script and `train --resume` look, the parts
joined and checked; it never overwrites a file that is already there (it may be further on). A resumed
run continues exactly (tests/test_faults.py).

Run from the repository root:
  python bench/park_runs.py park   runs/compared_design data/training/compared_design
  python bench/park_runs.py unpark data/training/compared_design runs/compared_design
"""
import argparse
import hashlib
import re
import sys
from pathlib import Path

from filmmtl.files import atomic_write

PART_BYTES = 4_000_000
PART = re.compile(r"\.pt\.(part\d{3}|sha256)$")


def park(out, parked):
    for exported in sorted((out / "checkpoints").glob("*")):
        atomic_write(parked / "checkpoints" / exported.name, exported.read_bytes())
    for log in sorted(out.glob("**/*.log")):
        atomic_write(parked / log.relative_to(out), log.read_bytes())
    for checkpoint in sorted((out / "train").glob("*.pt")):
        for old in (parked / "train").glob(f"{checkpoint.name}.*"):
            old.unlink()
        if (out / "checkpoints" / checkpoint.name).exists():
            continue  # finished: its export carries it
        data = checkpoint.read_bytes()
        for index, start in enumerate(range(0, len(data), PART_BYTES)):
            atomic_write(parked / "train" / f"{checkpoint.name}.part{index:03d}", data[start:start + PART_BYTES])
        atomic_write(parked / "train" / f"{checkpoint.name}.sha256", f"{hashlib.sha256(data).hexdigest()}\n")
        print(f"parked {checkpoint} ({len(data) / 1e6:.1f} MB)")


def unpark(parked, out):
    for source in sorted(parked.glob("**/*")):
        target = out / source.relative_to(parked)
        if source.is_file() and not PART.search(source.name) and not target.exists():
            atomic_write(target, source.read_bytes())  # whole or not at all: the script skips an exported name
    for digest_file in sorted((parked / "train").glob("*.pt.sha256")):
        target = out / "train" / digest_file.name[:-len(".sha256")]
        if target.exists():
            print(f"kept {target} (already there)")
            continue
        data = b"".join(part.read_bytes() for part in sorted(digest_file.parent.glob(f"{target.name}.part*")))
        if hashlib.sha256(data).hexdigest() != digest_file.read_text().strip():
            sys.exit(f"error: the parts of {target.name} under {digest_file.parent} do not match their SHA-256 "
                     f"(a part is missing or damaged); park the run again from the machine that holds it")
        atomic_write(target, data)
        print(f"unparked {target} ({len(data) / 1e6:.1f} MB)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["park", "unpark"])
    parser.add_argument("source", type=Path, help="park: the runs' OUT folder; unpark: the parked folder")
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    if not args.source.is_dir():
        sys.exit(f"error: {args.source} is not a folder (park: the runs' OUT folder; unpark: the parked folder)")
    (park if args.action == "park" else unpark)(args.source, args.target)


if __name__ == "__main__":
    main()
