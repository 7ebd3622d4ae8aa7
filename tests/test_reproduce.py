"""rmaplab reproduce for users: parameters in --help, and an output directory that keeps
the committed study untouched (executed notebooks, failed copies, numbers)."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from rmaplab import reproduce
from rmaplab.cli import main
from rmaplab.paths import notebooks_dir

PARAMS = '''# a comment line that belongs to nothing

alpha = 0.05   # significance level
# the seed of everything
seed = 1
claims = [   # what the patch claims
    {"metric": "x"},  # not a parameter comment
]
n: int = 3
'''


def notebook(tmp_path, name, body, params=PARAMS):
    nb = new_notebook(cells=[new_code_cell(params, metadata={"tags": ["parameters"]}),
                             new_code_cell(body)],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                               "language": "python"}})
    path = tmp_path / "notebooks" / name
    path.parent.mkdir(exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_parameters_cell_names_defaults_and_comments(tmp_path):
    path = notebook(tmp_path, "01_x.ipynb", "pass")
    got = [(p.name, p.default, p.help) for p in reproduce.parameters_cell(path)]
    assert got == [("alpha", "0.05", "significance level"), ("seed", "1", "the seed of everything"),
                   ("claims", "[{'metric': 'x'}]", "what the patch claims"), ("n", "3", "")]


def test_every_stored_notebook_parameter_is_explained_in_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for path in sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb")):
        assert f"  {path.stem}\n" in text
        for p in reproduce.parameters_cell(path):
            assert p.help, f"{path.name}: parameter {p.name} has no comment"
            assert f"    {p.name} = " in text and p.help.split()[0] in text


@pytest.fixture
def study(tmp_path, monkeypatch):
    """A repository of two tiny notebooks; the second writes a number for the paper."""
    root = tmp_path / "repo"
    (root / "paper").mkdir(parents=True)
    (root / "paper" / "numbers.json").write_text(json.dumps({"old.x": {"value": 1}}) + "\n")
    notebook(root, "01_a.ipynb", "print(alpha * 2)")
    notebook(root, "02_b.ipynb",
             "from rmaplab.numbers import Numbers\n"
             "n = Numbers('b', 'notebooks/02_b.ipynb'); n.add('seed', seed, '{}'); n.save()\n"
             "assert seed != 13, 'unlucky'")
    monkeypatch.setenv("RMAPLAB_ROOT", str(root))
    monkeypatch.delenv("RMAPLAB_OUTPUT_DIR", raising=False)
    return root


def test_output_dir_takes_every_result_and_leaves_the_study_alone(study, tmp_path):
    before = {p: p.read_bytes() for p in study.rglob("*") if p.is_file()}
    out = tmp_path / "experiment"
    reproduce.reproduce({"seed": 7}, paper=False, output_dir=out, log=lambda s: None)
    assert {p: p.read_bytes() for p in study.rglob("*") if p.is_file()} == before
    executed = nbformat.read(out / "notebooks" / "02_b.ipynb", as_version=4)
    assert executed.cells[1].execution_count is not None
    numbers = json.loads((out / "paper" / "numbers.json").read_text())
    assert numbers["b.seed"]["value"] == 7 and numbers["old.x"] == {"value": 1}
    # a failing notebook's executed copy also goes to the output directory
    assert main(["reproduce", "--no-paper", "--only", "02", "-p", "seed", "13",
                 "--output-dir", str(out)]) == 2
    assert (out / "build" / "failed" / "02_b.ipynb").exists()
    assert not (study / "build").exists()
    assert {p: p.read_bytes() for p in study.rglob("*") if p.is_file()} == before
