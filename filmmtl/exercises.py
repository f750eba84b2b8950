"""Student copies of the notebooks, made by nbgrader from the solution notebooks in ``notebooks/``.

An exercise is a markdown question, a *solution* cell (nbgrader metadata ``solution: true``; the answer
between ``### BEGIN SOLUTION`` and ``### END SOLUTION``) and a locked *check* cell that asserts the
answer (``grade: true`` with its ``points``). nbgrader's ``ClearSolutions`` replaces each answer by
``raise NotImplementedError()`` and
``ClearOutput`` drops the outputs; the copies go to ``notebooks/exercises/``:

    python -m filmmtl exercises            # write the student copies
    python -m filmmtl exercises --check    # exit 1 when a copy is out of date

Instructors who grade with the full nbgrader pipeline can use the solution notebooks as its source
notebooks: the metadata is nbgrader's own.
"""

from filmmtl.notebooks import NOTEBOOKS, notebook_paths

EXERCISES = NOTEBOOKS / "exercises"
SOLUTION_TAG, CHECK_TAG = "exercise", "exercise-check"


def student_copy(path):
    """The student copy of one solution notebook, as a notebook node (solutions blanked, no outputs)."""
    import nbformat
    from nbgrader.preprocessors import ClearOutput, ClearSolutions
    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        # The copies sit one folder deeper: keep the figures in the project's results folder, and let the
        # Colab cell change into the copies' folder.
        cell.source = cell.source.replace('output_dir = "../results"', 'output_dir = "../../results"').replace(
            "](../docs/", "](../../docs/").replace(
            'os.chdir(os.path.join(HOME, "notebooks"))', 'os.chdir(os.path.join(HOME, "notebooks", "exercises"))')
    resources = {}
    nb, resources = ClearSolutions(enforce_metadata=True).preprocess(nb, resources)
    nb, resources = ClearOutput().preprocess(nb, resources)
    return nb


def copies():
    """{student copy path: its text} for every solution notebook that has an exercise."""
    import nbformat
    out = {}
    for path in notebook_paths():
        if SOLUTION_TAG in path.read_text():
            out[EXERCISES / path.name] = nbformat.writes(student_copy(path)) + "\n"
    return out


def write(check=False):
    """Write the student copies; with ``check`` only list those that are missing or out of date."""
    wanted = copies()
    stale = [p for p, text in wanted.items() if not p.exists() or p.read_text() != text]
    if not check:
        EXERCISES.mkdir(exist_ok=True)
        for path in stale:
            path.write_text(wanted[path])
    return stale
