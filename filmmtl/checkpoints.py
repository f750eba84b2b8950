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
import re
import zipfile
from pathlib import Path

import torch

from filmmtl.config import BASE, model_options
from filmmtl.config import upgrade as upgrade_config  # a checkpoint's config as it was made (older fields filled)
from filmmtl.files import atomic_write, check_writable, locked
from filmmtl.models import build

# 1: files written before the version existed (read as made with config.ADDED_FIELDS); 2: design fields
# and the version itself.
FORMAT_VERSION = 2
MANIFEST_NAME = "MANIFEST.sha256"
# sha256sum's format: digest, two spaces (or a space and "*", its binary mark), the file name.
MANIFEST_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](\S.*)$")


def saved_bytes(obj):
    """What ``torch.save`` writes, in memory (so that ``files.atomic_write`` can write it whole)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def compressed_bytes(obj):
    """``torch.save`` with every entry of its zip archive deflated: about 10% smaller for fp16 weights,
    and ``torch.load`` reads it as it is (its zip reader inflates entries; only ``mmap=True`` would not)."""
    packed = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(saved_bytes(obj))) as source, \
            zipfile.ZipFile(packed, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as target:
        entries = {entry.filename: source.read(entry.filename) for entry in source.infolist()}
        content = hashlib.sha256(b"".join(v for k, v in entries.items() if not k.endswith("serialization_id")))
        for name, data in entries.items():
            # torch writes a random id per save; the content's digest instead: the same export, the same bytes
            target.writestr(name, content.hexdigest()[:40].encode() if name.endswith("serialization_id") else data)
    return packed.getvalue()


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
    missing = sorted(set(BASE) - set(state["config"]))
    if missing:
        raise ValueError(f"{path} has a partial config: {missing} missing; it was not written by filmmtl's train "
                         "or export (or was edited by hand)")
    return state


# ---------------------------------------------------------------- exports and their manifest

def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_manifest(folder):
    """{file name: sha256} of a folder's manifest ({} when it has none). sha256sum's own variants (a BOM,
    upper-case digits, the ``*`` binary mark) are read; a malformed line or a file listed twice with two
    digests is an error naming the line."""
    manifest = Path(folder) / MANIFEST_NAME
    if not manifest.exists():
        return {}
    restore = "restore it from the repository (git checkout -- data/checkpoints)"
    if not manifest.is_file():
        raise ValueError(f"{manifest} is not a file; {restore}")
    try:
        text = manifest.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{manifest} is not UTF-8 text (byte {err.start}); {restore}") from None
    listed, where = {}, {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = MANIFEST_LINE.match(line.rstrip("\r"))
        if not match:
            raise ValueError(f"{manifest}, line {number}: expected '<64 hex digits>  <file name>', got "
                             f"{line!r}; {restore}")
        digest, name = match.group(1).lower(), match.group(2)
        if listed.get(name, digest) != digest:
            raise ValueError(f"{manifest} lists {name} twice with different digests (lines {where[name]} and "
                             f"{number}); {restore}")
        listed[name], where[name] = digest, number
    return listed


def update_manifest(folder, name):
    """Record the sha256 of one file, keeping every other entry as it was (nothing else is re-blessed)."""
    folder = Path(folder)
    listed = read_manifest(folder)
    listed[name] = sha256(folder / name)
    atomic_write(folder / MANIFEST_NAME, "".join(f"{digest}  {file}\n" for file, digest in sorted(listed.items())))


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


def check_folder(target):
    """Refuse, before any file is replaced, a folder whose manifest is malformed or that holds checkpoints the
    manifest does not list (an export's manifest would make them unloadable). Called under the folder's lock:
    another export's half-done file is not a stray."""
    listed = read_manifest(target.parent)
    strays = sorted(p.name for p in target.parent.glob("*.pt") if p.name not in listed and p.name != target.name)
    if strays:
        raise ValueError(f"{target.parent} holds checkpoints its manifest does not list ({', '.join(strays)}): "
                         "an export writes a manifest there, after which they would no longer load. Export into a "
                         "folder of exports (such as data/checkpoints) or move them first")


def model_from_config(cfg):
    """The (untrained) network a checkpoint's config describes."""
    cfg = upgrade_config(cfg)
    return build(cfg["model"], n_tasks=len(cfg["tasks"]), **model_options(cfg))


def shipped_weights(config, weights):
    """Weights as exports keep them: fp16, or what the network says of a weight of its own
    (``shipped_weight(key, value)``: Piggyback keeps its binary masks)."""
    own = getattr(model_from_config(config), "shipped_weight", lambda key, value: None)
    kept = {k: own(k, v) for k, v in weights.items()}
    return {k: kept[k] if kept[k] is not None else v.half() if v.is_floating_point() else v
            for k, v in weights.items()}


def export_checkpoint(source, target, command, wall_minutes=None):
    """A shippable copy of a training checkpoint: fp16 weights, config, provenance, loss history and the
    command that made it, with a .json beside it; the manifest entry of ``target`` alone is updated.
    Refuses to write over its source or any training checkpoint."""
    source, target = Path(source), Path(target)
    if target.exists() and target.resolve() == source.resolve():
        raise ValueError(f"--out {target} is the checkpoint being exported: the export would replace the full "
                         "training checkpoint (and --resume with it); choose another --out")
    if target.exists() and "optimiser" in torch.load(target, map_location="cpu", weights_only=True):
        raise ValueError(f"{target} is a training checkpoint; an export will not overwrite it. Choose another --out")
    state = read_checkpoint(source, kind="training")
    small = {"model": shipped_weights(state["config"], state["model"]), "format": FORMAT_VERSION,
             "config": state["config"], "provenance": state["provenance"], "step": state["step"],
             "history": state["history"], "command": command}
    sidecar = {"command": command, "config": state["config"], "provenance": state["provenance"],
               "steps": state["step"], "wall_minutes": wall_minutes, "legs": state.get("legs", [])}
    check_writable(target)
    with locked(target.parent / MANIFEST_NAME, wait=60):  # two exports into one folder keep both lines
        check_folder(target)
        atomic_write(target, compressed_bytes(small))
        atomic_write(target.with_suffix(".json"), json.dumps(sidecar, indent=1))
        update_manifest(target.parent, target.name)
    return target
