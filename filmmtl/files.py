"""Writing files so that nothing is lost: checked before any work, locked while written, replaced whole.

Every output (checkpoint, export, manifest, report, cache) is built in memory, written to a temporary name
beside its target and renamed over it: a crash or a full disk leaves the old file or the new one, never
half of one. A temporary file left by a killed process is removed by the next write into its folder. A
full disk is named with the path and the space it needed. ``locked`` keeps two processes from writing one
output at once (a lock file holding the owner's pid; one left by a dead process is named and taken over).
"""
import errno
import os
import re
import shutil
import socket
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

# ".NAME.PID.tmp": what atomic_write leaves behind if its process is killed mid-write.
TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


class DiskFull(OSError):
    """No space left where an output is written; the message names the path and the space needed."""


class Locked(RuntimeError):
    """Another live process is writing the same output."""


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def clean_temporaries(folder):
    """Remove temporary files whose writer is dead (killed mid-write); a live writer's are kept."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.iterdir():
        match = TEMPORARY.match(path.name)
        if match and not process_alive(int(match["pid"])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def disk_full(path, needed):
    free = shutil.disk_usage(Path(path).parent).free
    return DiskFull(errno.ENOSPC, f"disk full: writing {path} needs {needed / 1e6:.1f} MB and its disk has "
                                  f"{free / 1e6:.1f} MB free; free some space or choose another output (the "
                                  "previous file, if any, is untouched)")


def atomic_write(path, data):
    """Write ``data`` (bytes or str) to ``path`` whole or not at all: a temporary file renamed over it. On
    any error ``path`` is untouched and the temporary file removed; a full disk raises ``DiskFull``."""
    path = Path(path)
    data = data.encode() if isinstance(data, str) else bytes(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_temporaries(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(path, len(data)) from None
        raise
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return path


def check_writable(path):
    """Fail now, naming the path, if a file cannot be written at ``path`` (before hours of work)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name such as {path / 'run.pt'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.with_name(f".{path.name}.{os.getpid()}.tmp")
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


def take_lock(lock, path, host):
    """Create the lock file, or say why not: the live owner's message, or None when a stale one was removed."""
    try:
        descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        owner = lock.read_text().split() if lock.exists() else []
        pid = int(owner[0]) if owner and owner[0].isdigit() else None
        same_host = len(owner) < 2 or owner[1] == host
        if pid is not None and (not same_host or process_alive(pid)):
            where = "" if same_host else f" on {owner[1]}"
            return (f"{path} is being written by process {pid}{where} (lock file {lock}); wait for it to finish "
                    "or choose another output. If that process is gone, delete the lock file")
        warnings.warn(f"{lock} was left by process {pid}, which is no longer running; taking it over", stacklevel=4)
        lock.unlink(missing_ok=True)
        return None
    with os.fdopen(descriptor, "w") as file:
        file.write(f"{os.getpid()} {host}\n")
    return True


@contextmanager
def locked(path, wait=0.0):
    """Hold ``.NAME.lock`` beside ``path`` (it holds the owner's pid and host) while the block runs. A live
    owner's lock is waited for up to ``wait`` seconds, then refused naming it; one left by a dead process
    is reported and taken over."""
    path = Path(path)
    lock = path.with_name(f".{path.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    host, deadline = socket.gethostname(), time.monotonic() + wait
    while (taken := take_lock(lock, path, host)) is not True:
        if taken is not None and time.monotonic() >= deadline:
            raise Locked(taken)
        time.sleep(0.05)
    try:
        yield path
    finally:
        lock.unlink(missing_ok=True)
