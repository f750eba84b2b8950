"""The main job: execute every notebook in order with papermill, in place, outputs into a results folder.

A failing notebook stops the run with its name and the failing cell; notebooks already run keep their
new outputs and the failing one is left as it was (papermill writes to a temporary copy first).
"""
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def notebook_paths(only=None):
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if only:
        paths = [p for p in paths if any(key in p.name for key in only)]
    if not paths:
        raise FileNotFoundError(f"no notebooks matching {only or '*'} in {NOTEBOOKS}")
    return paths


def strip_widget_state(path):
    """Drop saved widget state (it bloats the file and is useless without a live kernel) and the paths of
    this machine that papermill records in the metadata."""
    import nbformat
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)
    for key in ("input_path", "output_path"):
        nb.metadata.get("papermill", {}).pop(key, None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            output.get("data", {}).pop("application/vnd.jupyter.widget-view+json", None)
    nbformat.write(nb, path)


def run_all(profile="auto", out="results", only=None, kernel="python3"):
    import papermill
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; the notebooks' figures and tables go into a folder: name one "
                         "(such as results)")
    out.mkdir(parents=True, exist_ok=True)
    os.environ["FILMMTL_HEADLESS"] = "1"  # no frontend: the explorer draws its static grid
    timings = []
    for path in notebook_paths(only):
        start = time.time()
        print(f"running {path.name} (profile {profile}) ...", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            executed = Path(tmp) / path.name
            try:
                # The output folder relative to the notebook: no machine's path is written into it.
                parameters = {"profile": profile, "output_dir": os.path.relpath(out, path.parent)}
                papermill.execute_notebook(str(path), str(executed), cwd=str(path.parent), kernel_name=kernel,
                                           parameters=parameters,
                                           progress_bar=False)
            except papermill.PapermillExecutionError as err:
                sys.exit(f"{path.name} failed in cell {err.exec_count} ({err.ename}: {err.evalue}); "
                         f"the committed notebook was left unchanged")
            strip_widget_state(executed)
            shutil.copyfile(executed, path)
        timings.append((path.name, time.time() - start))
        print(f"  done in {timings[-1][1]:.0f} s", flush=True)
    summary = "\n".join(f"{name}: {seconds:.0f} s" for name, seconds in timings)
    (out / "timings.txt").write_text(f"profile {profile}, {os.cpu_count()} CPUs\n{summary}\n")
    print(summary)
