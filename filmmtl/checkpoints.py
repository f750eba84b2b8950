"""Checkpoint files: atomic writes, a format version, shippable fp16 exports and their sha256 manifest.

Two kinds of file, told apart by their keys: a *training* checkpoint (``Trainer.save``: weights,
optimisers, random state; ``--resume`` continues it exactly) and an *export* (fp16 weights, config,
history and the command that made it, in a deflated archive: what ``data/checkpoints`` ships). Every
file is written to a temporary name and renamed, so a crash never leaves half a file, and no command
overwrites a training checkpoint with an export. A folder of exports carries ``MANIFEST.sha256``; a file
in such a folder is loaded only if its bytes are the ones listed.
"""
import hashlib
import io
import json
import os
import re
import zipfile
from pathlib import Path

import torch

# 1: files written before the version existed (read as made with ADDED_FIELDS); 2: design fields and
# the version itself.
FORMAT_VERSION = 2
# Config fields added after the first shipped networks, with the values those networks were made with.
ADDED_FIELDS = dict(feature_skips=[], skip_gate=False, output_scale="none", output_gate=False,
                    generator_init_std=None, balance="none", balance_cap=10.0,
                    max_loss=1e5,  # the largest loss the shipped runs logged: 2,714
                    identity_noise=0.0, hole_weight=1.0, content_scale=1.0)
MANIFEST_NAME = "MANIFEST.sha256"
MANIFEST_LINE = re.compile(r"^([0-9a-f]{64})  (\S.*)$")


def atomic_write(path, write):
    """Call ``write(temporary_path)``, then rename the result over ``path``. On any error ``path`` is
    untouched and the temporary file removed (a failing clean-up never hides the original error)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return path


def save_compressed(obj, path):
    """``torch.save`` with every entry of its zip archive deflated: about 10% smaller for fp16 weights,
    and ``torch.load`` reads it as it is (its zip reader inflates entries; only ``mmap=True`` would not)."""
    plain = io.BytesIO()
    torch.save(obj, plain)
    with zipfile.ZipFile(plain) as source, \
            zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as target:
        entries = {entry.filename: source.read(entry.filename) for entry in source.infolist()}
        content = hashlib.sha256(b"".join(v for k, v in entries.items() if not k.endswith("serialization_id")))
        for name, data in entries.items():
            # torch writes a random id per save; the content's digest instead: the same export, the same bytes
            target.writestr(name, content.hexdigest()[:40].encode() if name.endswith("serialization_id") else data)


def check_writable(path):
    """Fail now, naming the path, if a file cannot be written at ``path`` (before hours of work)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name such as {path / 'run.pt'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.with_name(f".{path.name}.{os.getpid()}.probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write {path} ({err.strerror or err}); choose a writable --out") from None
    return path


def check_output(out, *inputs, sidecar=False):
    """Refuse, before any work, an output that would replace one of ``inputs`` (or their sidecars) or, when
    it gets a ``.json`` sidecar beside it, an output that is that sidecar itself."""
    out = Path(out)
    if sidecar and out.suffix == ".json":
        raise ValueError(f"--out {out} ends in .json: the .json written beside it would replace it; "
                         f"use a .pt name such as {out.with_suffix('.pt')}")
    taken = {Path(p).resolve() for i in inputs for p in (i, Path(i).with_suffix(".json"))}
    written = {out.resolve()} | ({out.with_suffix(".json").resolve()} if sidecar else set())
    clash = sorted(str(p) for p in taken & written)
    if clash:
        raise ValueError(f"--out {out} would overwrite {', '.join(clash)}, which this command reads; "
                         "choose another --out (nothing was written)")
    return out


def upgrade_config(cfg):
    """A checkpoint's config with the design fields it predates filled in as it was made."""
    return {**ADDED_FIELDS, **cfg}


def read_checkpoint(path, kind=None):
    """Load with ``weights_only=True`` (tensors and plain data only, pickled code refused) and check that
    it is a filmmtl checkpoint of a format this version reads; ``kind="training"`` refuses exports."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path} is not a readable filmmtl checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or not {"model", "config"} <= set(state):
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is not a filmmtl checkpoint (it holds {keys}, not 'model' and 'config')")
    version = state.get("format", 1)
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format {version}, newer than this filmmtl reads "
                         f"({FORMAT_VERSION}); update filmmtl")
    if kind == "training" and "optimiser" not in state:
        raise ValueError(f"{path} is an exported (weights-only) checkpoint and cannot be resumed: it has no "
                         "optimiser state. Train a new run with another --out (or evaluate this one)")
    if not isinstance(state["config"], dict):
        raise ValueError(f"{path} has a config of type {type(state['config']).__name__}, not a dict of fields; "
                         "it was not written by filmmtl's train or export")
    state["config"] = upgrade_config(state["config"])
    from filmmtl.profiles import BASE
    missing = sorted(set(BASE) - set(state["config"]))
    if missing:
        raise ValueError(f"{path} has a partial config: {missing} missing; it was not written by filmmtl's train "
                         "or export (or was edited by hand)")
    return state


# ---------------------------------------------------------------- exports and their manifest

def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_manifest(folder):
    """{file name: sha256} of a folder's manifest ({} when it has none); a malformed line is an error."""
    manifest = Path(folder) / MANIFEST_NAME
    if not manifest.exists():
        return {}
    listed = {}
    for number, line in enumerate(manifest.read_text().splitlines(), 1):
        if not line.strip():
            continue
        match = MANIFEST_LINE.match(line)
        if not match:
            raise ValueError(f"{manifest}, line {number}: expected '<64 hex digits>  <file name>', got "
                             f"{line!r}; restore the file from the repository")
        listed[match.group(2)] = match.group(1)
    return listed


def update_manifest(folder, name):
    """Record the sha256 of one file, keeping every other entry as it was (nothing else is re-blessed)."""
    folder = Path(folder)
    listed = read_manifest(folder)
    listed[name] = sha256(folder / name)
    text = "".join(f"{digest}  {file}\n" for file, digest in sorted(listed.items()))
    atomic_write(folder / MANIFEST_NAME, lambda tmp: tmp.write_text(text))


def verify(path):
    """Refuse a file in a manifest folder whose bytes are not the ones listed (files elsewhere pass)."""
    path = Path(path)
    if not (path.parent / MANIFEST_NAME).exists():
        return
    listed = read_manifest(path.parent)
    if path.name not in listed:
        raise ValueError(f"{path} is not listed in {path.parent / MANIFEST_NAME}: re-clone data/checkpoints, "
                         "or export it with `python -m filmmtl export`")
    if listed[path.name] != sha256(path):
        raise ValueError(f"{path} does not match {path.parent / MANIFEST_NAME}: re-clone data/checkpoints "
                         "or retrain=True")


def export_checkpoint(source, target, command, wall_minutes=None):
    """A shippable copy of a training checkpoint: fp16 weights, config, provenance, loss history and the
    command that made it, with a .json beside it; the manifest entry of ``target`` alone is updated.
    Piggyback's real-valued mask scores are stored as the binary masks inference uses (fp16 rounding near
    the threshold could flip them), as bool. Refuses to write over its source or any training checkpoint."""
    from filmmtl.baselines import MASK_THRESHOLD
    source, target = Path(source), Path(target)
    if target.exists() and target.resolve() == source.resolve():
        raise ValueError(f"--out {target} is the checkpoint being exported: the export would replace the full "
                         "training checkpoint (and --resume with it); choose another --out")
    if target.exists() and "optimiser" in torch.load(target, map_location="cpu", weights_only=True):
        raise ValueError(f"{target} is a training checkpoint; an export will not overwrite it. Choose another --out")
    listed = read_manifest(target.parent)  # a malformed manifest stops here, before any file is replaced
    strays = sorted(p.name for p in target.parent.glob("*.pt") if p.name not in listed and p.name != target.name)
    if strays:
        raise ValueError(f"{target.parent} holds checkpoints its manifest does not list ({', '.join(strays)}): "
                         "an export writes a manifest there, after which they would no longer load. Export into a "
                         "folder of exports (such as data/checkpoints) or move them first")
    state = read_checkpoint(source, kind="training")

    def shrink(key, value):
        if key.startswith("masks."):
            return value > MASK_THRESHOLD  # bool: one byte per weight
        return value.half() if value.is_floating_point() else value
    small = {"model": {k: shrink(k, v) for k, v in state["model"].items()}, "format": FORMAT_VERSION,
             "config": state["config"], "provenance": state["provenance"], "step": state["step"],
             "history": state["history"], "command": command}
    check_writable(target)
    atomic_write(target, lambda tmp: save_compressed(small, tmp))
    sidecar = {"command": command, "config": state["config"], "provenance": state["provenance"],
               "steps": state["step"], "wall_minutes": wall_minutes, "legs": state.get("legs", [])}
    atomic_write(target.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(sidecar, indent=1)))
    update_manifest(target.parent, target.name)
    return target
