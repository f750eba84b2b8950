"""The exercises: student copies in sync with the solution notebooks, blanks where the answers were, and
checks that pass with the solutions and fail without them."""
import nbformat
import pytest

from filmmtl.exercises import CHECK_TAG, SOLUTION_TAG, copies, student_copy, write
from filmmtl.notebooks import notebook_paths

SOLUTIONS = notebook_paths()


def exercise_cells(nb):
    return [c for c in nb.cells if {SOLUTION_TAG, CHECK_TAG} & set(c.metadata.get("tags", []))]


def test_student_copies_are_up_to_date():
    assert write(check=True) == [], "run: python -m filmmtl exercises"


def test_every_notebook_has_an_exercise():
    assert sorted(p.name for p in copies()) == sorted(p.name for p in SOLUTIONS)


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_student_copy_blanks_every_answer_and_keeps_the_rest(path):
    solution, student = nbformat.read(path, as_version=4), student_copy(path)
    for theirs, ours in zip(exercise_cells(solution), exercise_cells(student)):
        if SOLUTION_TAG in theirs.metadata["tags"]:
            answer = theirs.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
            assert "raise NotImplementedError()" in ours.source
            assert not any(line.strip() and line in ours.source for line in answer.splitlines())
        else:
            assert ours.source == theirs.source  # the checks are given
    assert not any(c.get("outputs") for c in student.cells)
    assert "BEGIN SOLUTION" not in nbformat.writes(student)


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_checks_pass_with_the_solutions_and_fail_with_the_blanks(path, capsys):
    """Exercise cells are self-contained: run alone, in order, in a fresh namespace."""
    scope = {}
    for cell in exercise_cells(nbformat.read(path, as_version=4)):
        exec(compile(cell.source, f"{path.name}:exercise", "exec"), scope)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(NotImplementedError):
        scope = {}
        for cell in exercise_cells(student_copy(path)):
            exec(compile(cell.source, f"{path.name}:student", "exec"), scope)
