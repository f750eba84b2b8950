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


# Wrong answers and shortcuts a student might type, by exercise: each must fail its check. The answer
# replaces the code between the solution markers (indented as there).
SHORTCUTS = {
    "01_film_layer": ["return gamma[:, :, None, None] * h + beta[:, :, None, None]",  # FiLM without the norm
                      "from filmmtl.models import film_norm\nreturn film_norm(h, gamma, beta, eps)",
                      "import torch.nn.functional as F\n"
                      "return gamma[:, :, None, None] * F.instance_norm(h, eps=eps) + beta[:, :, None, None]"],
    "01_film_generator": ["def __init__(self, n_tasks, n_channels, init_std=0.01):\n"  # PyTorch's own initialisation
                          "    super().__init__()\n    self.n_channels = n_channels\n"
                          "    self.linear = torch.nn.Linear(n_tasks, 2 * n_channels)\n\n"
                          "def forward(self, c):\n    out = self.linear(c)\n"
                          "    return out[:, :self.n_channels], out[:, self.n_channels:]",
                          "def __init__(self, n_tasks, n_channels, init_std=0.01):\n"  # gamma and beta swapped
                          "    super().__init__()\n    self.n_channels = n_channels\n"
                          "    self.linear = torch.nn.Linear(n_tasks, 2 * n_channels)\n"
                          "    with torch.no_grad():\n        self.linear.weight.normal_(0, init_std)\n"
                          "        self.linear.bias.copy_(\n"
                          "            torch.cat([torch.ones(n_channels), torch.zeros(n_channels)]))\n\n"
                          "def forward(self, c):\n    out = self.linear(c)\n"
                          "    return out[:, self.n_channels:], out[:, :self.n_channels]"],
    "01_exercise1": ["return torch.nn.functional.instance_norm(h, eps=eps)",
                     "return torch.nn.InstanceNorm2d(h.shape[1], eps=eps)(h)",
                     "return (h - h.mean()) / h.std()"],  # normalised over the whole batch, not per channel
    "01_exercise2": ["return torch.tensor([0.5, 0.5, 0.5])",
                     "return colours.median(dim=0).values",
                     "return colours.mean(dim=0)",  # the unconditional mean: the whole lesson missed
                     "grey = colours @ torch.tensor([0.299, 0.587, 0.114])\n"
                     "return colours[(grey >= low) & (grey <= high)].median(dim=0).values"],  # L1's answer
    "01_exercise3": ["return features.flatten(2) @ features.flatten(2).transpose(1, 2)",  # not normalised
                     "from filmmtl.losses import gram as library_gram\nreturn library_gram(features)",
                     "f = features.flatten(2)\nreturn f.transpose(1, 2) @ f / f.shape[1]"],  # positions, not channels
    "01_exercise4": ["pass",  # gamma trains
                     "with torch.no_grad():\n"  # set to 1, then trained away
                     "    model.generator.mlp[-1].weight[:model.generator.n_channels] = 0\n"
                     "    model.generator.mlp[-1].bias[:model.generator.n_channels] = 1"],
    "01_exercise5": ['closest_in_style = "painting, shifted"\nclosest_in_content = "photo, shifted"',
                     'closest_in_style = "painting"\nclosest_in_content = "painting"'],
    "02_exercise1": ["return 0.01, 20.0", "return sigma, 10 * math.log10(1 / sigma)"],
    "02_exercise2": ['slowest_at_half = "segmentation"\nany_past_half = False',
                     'slowest_at_half = "completion"\nany_past_half = True'],
    "02_exercise3": ["return 30.0",
                     "with torch.no_grad():\n"  # the PSNR of the mean error, not the mean PSNR
                     "    output = model(images, torch.zeros(model.n_tasks)).clamp(0, 1)\n"
                     "return float(10 * torch.log10(1 / (output - images).square().mean()))",
                     "with torch.no_grad():\n"  # the output not clamped to [0, 1]
                     "    output = model(images, torch.zeros(model.n_tasks))\n"
                     "return float((10 * torch.log10(1 / (output - images).square().flatten(1).mean(1))).mean())"],
    "03_exercise1": ["return (A + B) / 2", "return A"],
    "03_exercise2": ["with torch.no_grad():\n"
                     "    return torch.cat(generator(torch.eye(6)[[a]] + torch.eye(6)[[b]]), dim=1)[0]",
                     "return W[:, a] + W[:, b]"],  # the bias forgotten
    "04_exercise1": ["return 3200, 1679235", "return 1600, 1679235"],
    "05_exercise2": ["return first_layer",
                     "return torch.nn.Linear(first_layer.in_features + 1, first_layer.out_features)",
                     "grown = torch.nn.Linear(first_layer.in_features + 1, first_layer.out_features)\n"
                     "with torch.no_grad():\n"  # the new column left at its random start
                     "    grown.weight[:, :-1] = first_layer.weight\n    grown.bias.copy_(first_layer.bias)\n"
                     "return grown"],
    "05_exercise1": ["return model.film(a)",
                     "(gamma_a, beta_a), (gamma_b, beta_b) = model.film(a), model.film(b)\n"
                     "return t * gamma_a + (1 - t) * gamma_b, t * beta_a + (1 - t) * beta_b"],  # the ends swapped
}


def with_answer(source, answer):
    """A solution cell's source with ``answer`` between its markers, at the markers' indentation."""
    lines = source.splitlines()
    begin = next(i for i, line in enumerate(lines) if line.strip() == "### BEGIN SOLUTION")
    end = next(i for i, line in enumerate(lines) if line.strip() == "### END SOLUTION")
    indent = lines[begin][:len(lines[begin]) - len(lines[begin].lstrip())]
    return "\n".join(lines[:begin + 1] + [indent + line for line in answer.splitlines()] + lines[end:])


@pytest.mark.parametrize("grade_id, answer", [(k, a) for k, answers in SHORTCUTS.items() for a in answers],
                         ids=[f"{k}-{i}" for k, answers in SHORTCUTS.items() for i in range(len(answers))])
def test_every_shortcut_fails_its_check(grade_id, answer):
    path = next(p for p in SOLUTIONS if p.name.startswith(grade_id[:2]))
    cells = exercise_cells(nbformat.read(path, as_version=4))
    names = [c.metadata["nbgrader"]["grade_id"] for c in cells]
    assert grade_id in names and f"{grade_id}_check" in names, names
    scope = {}
    for cell in cells:
        name = cell.metadata["nbgrader"]["grade_id"]
        if name.removesuffix("_check") != grade_id:
            exec(compile(cell.source, f"{path.name}:{name}", "exec"), scope)
        elif name == grade_id:
            exec(compile(with_answer(cell.source, answer), f"{path.name}:{name}", "exec"), scope)
        else:
            with pytest.raises(AssertionError):
                exec(compile(cell.source, f"{path.name}:{name}", "exec"), scope)
            return
    raise AssertionError(f"no check cell ran for {grade_id}")


def test_every_check_is_graded_with_points_and_there_are_enough_exercises():
    checks = [c for p in SOLUTIONS for c in exercise_cells(nbformat.read(p, as_version=4))
              if CHECK_TAG in c.metadata["tags"]]
    assert all(c.metadata["nbgrader"]["grade"] and c.metadata["nbgrader"]["points"] > 0 for c in checks)
    assert {c.metadata["nbgrader"]["grade_id"].removesuffix("_check") for c in checks} == set(SHORTCUTS)
