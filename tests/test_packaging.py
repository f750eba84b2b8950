"""One package set: pyproject.toml, environment.yml and requirements.lock must agree."""
import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib")
ROOT = Path(__file__).resolve().parents[1]


def name_of(requirement):
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return {name_of(r): r for r in reqs}


def environment_requirements():
    deps = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    flat = [d for d in deps if isinstance(d, str)] + [p for d in deps if isinstance(d, dict) for p in d["pip"]]
    out = {}
    for d in flat:
        if d.startswith("-e") or name_of(d) in {"python", "pip"}:
            continue
        out[name_of(d)] = d.replace(" ", "")
    return out


def test_environment_yml_lists_the_pyproject_set():
    assert environment_requirements() == {k: v.replace(" ", "") for k, v in pyproject_requirements().items()}


def test_lock_pins_every_declared_package():
    lock = {name_of(line): line for line in (ROOT / "requirements.lock").read_text().splitlines()
            if line and not line.startswith("#")}
    missing = set(pyproject_requirements()) - set(lock)
    assert not missing, f"requirements.lock lacks {sorted(missing)}: re-freeze it"
    assert all("==" in line for line in lock.values())


def test_make_refuses_a_full_disk_before_creating_the_venv(tmp_path):
    """A disk too small for torch's CUDA build stops make with the fix named, not pip half-way through."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for name in ("Makefile", "requirements.lock", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    done = subprocess.run(["make", "NEED_MB=999999999", "test"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode != 0
    assert "needs about 999999999 MB free" in done.stderr and "Free some space" in done.stderr
    assert not (tmp_path / ".venv").exists()


def test_the_code_passes_its_linter():
    """ruff with the project's configuration (pyproject.toml): pycodestyle and pyflakes, 120 characters."""
    import subprocess
    import sys
    found = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)], capture_output=True,
                           text=True)
    assert found.returncode == 0, found.stdout[-3000:]


def package_modules():
    return {path.stem: ast.parse(path.read_text()) for path in sorted((ROOT / "filmmtl").glob("*.py"))}


def test_the_package_has_no_import_circle():
    """Module -> the package modules it imports (at the top or inside a function); no path leads back."""
    modules = package_modules()
    imports = {}
    for name, tree in modules.items():
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("filmmtl"):
                rest = node.module.split(".")[1:]
                found |= {rest[0]} if rest else {alias.name for alias in node.names}
        imports[name] = found & set(modules) - {name}

    def reaches(start, goal, seen):
        return any(m == goal or (m not in seen and reaches(m, goal, seen | {m})) for m in imports[start])
    assert [name for name in modules if reaches(name, name, {name})] == []


def test_no_class_over_150_lines_and_no_function_over_50():
    too_long = []
    for name, tree in package_modules().items():
        for node in ast.walk(tree):
            limit = 150 if isinstance(node, ast.ClassDef) else 50 if isinstance(node, ast.FunctionDef) else None
            if limit and node.end_lineno - node.lineno + 1 > limit:
                too_long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert too_long == []
